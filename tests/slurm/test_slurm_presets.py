"""The launcher presets in conf/hydra/launcher/ compose and turn into the expected sbatch options.

No cluster needed (no `slurm` marker): the sbatch script is rendered the way hydra-submitit-launcher does it,
without submitting it.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

import r1zero.run.config  # noqa: F401  (the ${r1zero_root:} resolver that train.yaml's hydra.searchpath uses)

REPO = Path(__file__).resolve().parents[2]


def _launcher(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        cfg = compose(
            config_name="train", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True
        )
        HydraConfig.instance().set_config(cfg)  # the presets interpolate hydra.sweep.dir / hydra.job.name
        try:
            return instantiate(cfg.hydra.launcher)
        finally:
            HydraConfig.instance().cfg = None


def _executor(launcher, cluster: str, folder: Path):
    """The submitit executor BaseSubmititLauncher.launch builds from the preset's params."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(launcher.params)
    init = {"folder": str(folder)}
    if "max_num_timeout" in params:
        init[f"{cluster}_max_num_timeout"] = params["max_num_timeout"]
    executor = submitit.AutoExecutor(cluster=cluster, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"{cluster}_{k}": v
            for k, v in params.items()
            if k not in {"submitit_folder", "max_num_timeout"}
        }
    )
    return executor


def _sbatch_lines(launcher, tmp_path: Path) -> set[str]:
    ex = _executor(launcher, "slurm", tmp_path / "%j")
    text = ex._executor._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    return {line for line in text.splitlines() if line.startswith("#SBATCH")}


def test_slurm_a100_preset(tmp_path):
    launcher = _launcher("slurm_a100")
    assert type(launcher).__name__ == "SlurmLauncher"
    lines = _sbatch_lines(launcher, tmp_path)
    for expected in [
        "--gpus-per-node=8",
        "--cpus-per-task=8",
        "--mem=480GB",
        "--time=1440",
        "--nodes=1",
        "--ntasks-per-node=8",  # one rank per GPU
        "--signal=USR2@900",  # grace for a step + eval + checkpoint (conf/hydra/launcher/slurm_a100.yaml)
    ]:
        assert f"#SBATCH {expected}" in lines, (expected, sorted(lines))
    assert not any(opt in line for line in lines for opt in ("--partition", "--account", "--qos"))
    assert launcher.params["max_num_timeout"] == 3


def test_slurm_a100_overrides(tmp_path):
    launcher = _launcher(
        "slurm_a100",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=proj",
        "hydra.launcher.qos=high",
        "+hydra.launcher.additional_parameters.exclusive=true",
        "hydra.launcher.setup=[module load cuda]",
    )
    ex = _executor(launcher, "slurm", tmp_path / "%j")
    text = ex._executor._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    for expected in [
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --qos=high",
        "#SBATCH --exclusive",
        "module load cuda",
    ]:
        assert expected in text.splitlines(), (expected, text)


def test_slurm_local_preset(tmp_path):
    launcher = _launcher("slurm_local")
    lines = _sbatch_lines(launcher, tmp_path)
    for expected in ["--partition=r1zero", "--cpus-per-task=1", "--mem=2GB", "--time=10"]:
        assert f"#SBATCH {expected}" in lines, (expected, sorted(lines))
    assert not any("gpus" in line or "gres" in line for line in lines), sorted(lines)
    # The partition must be the one scripts/slurm/up.sh creates.
    common = (REPO / "scripts" / "slurm" / "common.sh").read_text()
    assert f"PARTITION={launcher.params['partition']} " in common


def test_local_preset(tmp_path):
    launcher = _launcher("local")
    assert type(launcher).__name__ == "LocalLauncher"
    ex = _executor(launcher, "local", tmp_path / "%j")
    assert ex._executor.parameters["timeout_min"] == 1440
    assert ex._executor.parameters["gpus_per_node"] == 1
