"""Faults outside the config: bad input files and reused run directories each end in one clear line."""

from __future__ import annotations

import pytest
from conftest import compose

from r1zero.data import read_rows
from r1zero.errors import ConfigError, DataUnavailableError


@pytest.mark.parametrize("content,needle", [
    (b'{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "ans', "line 2: not valid JSON"),
    (b'{"problem": "1+1", "answer": "2"}\n[1, 2]\n', "line 2: a JSON list, not an object"),
    (b'{"problem": "1+1", "answer": "2"}\n\xff\xfe\x00binary\n', "line 2: not UTF-8 text"),
], ids=["truncated", "not-an-object", "binary"])
def test_malformed_jsonl_names_the_file_and_line(tmp_path, content, needle):
    path = tmp_path / "set.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataUnavailableError, match=needle) as info:
        read_rows(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_json_without_the_split_and_corrupt_parquet_are_one_line(tmp_path):
    (tmp_path / "set.json").write_text('{"test": [{"problem": "1+1", "answer": "2"}]}')
    with pytest.raises(DataUnavailableError, match=r"split 'train' not found; available splits: \['test'\]"):
        read_rows(str(tmp_path / "set.json"), "train")
    (tmp_path / "set.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataUnavailableError, match="set.parquet: not a readable parquet file"):
        read_rows(str(tmp_path / "set.parquet"))


TOY = ["model=tiny", "data=arith", "data.max_questions=8", "train.total_steps=1", "train.prompts_per_rollout=2",
       "sampling.group_size=2", "sampling.max_new_tokens=4", "train.mini_batch_size=null", "train.save_every=0",
       "logger.progress_bar=false", "reward.num_workers=1"]


def test_a_run_directory_holds_one_run(tmp_path, capsys):
    import r1zero.train as train_mod

    train_mod.run(compose(TOY, run_dir=tmp_path))
    metrics = (tmp_path / "metrics.jsonl").read_text()
    # the same command again: the run is finished, nothing is retrained
    train_mod.run(compose(TOY, run_dir=tmp_path))
    assert "already holds a finished run of 1 steps" in capsys.readouterr().out
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    # another experiment in the same directory: refused, naming the changed keys, nothing lost
    with pytest.raises(ConfigError, match=r"^resume: .*algo.name: 'drgrpo' -> 'grpo'.*model.hidden_size: 64 -> 32"):
        train_mod.run(compose(TOY + ["algo=grpo", "model.hidden_size=32"], run_dir=tmp_path))
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    assert "hidden_size: 64" in (tmp_path / "config.yaml").read_text()


def test_runs_started_together_get_their_own_directories():
    from conftest import CONF

    text = (CONF / "train.yaml").read_text()  # hydra.run.dir: microseconds and the seed
    assert "${now:%H-%M-%S-%f}" in text and "_s${seed}" in text


def test_eval_samples_of_steps_made_again_are_dropped_on_resume(tmp_path):
    from r1zero.rundir import truncate_after

    path = tmp_path / "eval_samples.jsonl"
    path.write_text('{"step": 0}\n{"step": 2}\n{"step": 4}\n{"step": null}\n{"step": 6, "que')
    assert truncate_after(path, 2) == 2  # step 4 and the half-written 6; null (a standalone evaluation) stays
    assert path.read_text() == '{"step": 0}\n{"step": 2}\n{"step": null}\n'


def test_eval_inputs_are_checked_at_start_up(tmp_path):
    import r1zero.train as train_mod

    with pytest.raises(DataUnavailableError, match="/nonexistent/suite"):
        train_mod.run(compose(TOY + ["eval.every=1", "eval.path=/nonexistent/suite", "eval.benchmarks=[aime]"],
                              run_dir=tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists()  # no training step ran
