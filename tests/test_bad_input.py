"""Bad input as a new user types it: one line before any work, and options that change no result change no
key (README's troubleshooting table, a row a test)."""
import pytest

from harness.config.compose import compose
from harness.config.variants import variant_label
from harness.errors import UserError
from harness.pipeline.stages import check_job, load_task, make_algo, run_spec
from harness.pipeline.warm_start import warm_start_spec
from tests.conftest import run_cli


@pytest.mark.parametrize("option", ["train.checkpoint_every=50", "train.log_every=1", "train.micro_batch_size=4",
                                    "generation.batch_size=8", "model.gradient_checkpointing=true"])
def test_operational_options_change_no_key_nor_label(option):
    base, other = compose(["algo=dqo"]), compose(["algo=dqo", option])
    algo = make_algo(base.algo)
    assert run_spec(other, algo) == run_spec(base, algo)
    assert variant_label([option], run_spec(other, algo)) == ""
    task = load_task(base.task)[0]
    assert warm_start_spec(other, task) == warm_start_spec(base, task)


@pytest.mark.parametrize("overrides, words", [
    (["algo=dpo", "bank.k=1"], "bank.k=1: dpo needs at least 2 samples per prompt"),
    (["seed=abc"], "seed='abc': must be a whole number"),
    (["train.checkpoint_minutes=abc"], "train.checkpoint_minutes='abc' is not a number"),
    (["train.checkpoint_minutes=-1"], "train.checkpoint_minutes=-1 is out of range: it must be >= 0"),
    (["train.group_by_prompt=maybe"], "train.group_by_prompt='maybe': must be true or false"),
    (["task.n_val=5000"], "task.n_val=5000 leaves no RL prompts in a train split of 5000"),
    (["eval.split=dev"], "eval.split='dev': valid values are test"),
    (["eval.every=5", "task.n_val=0"], "task.n_val must be > 0"),
    (["warm_start.draw=-1"], "warm_start.draw=-1 is out of range: it must be >= 0"),
    (["warm_start.draw=9"], "warm_start.draw=9: family arith-tiny ships draws 0, 1, 2, 3, 4"),
])
def test_checked_before_any_work(overrides, words):
    with pytest.raises(UserError, match=words):
        check_job(compose(overrides))


@pytest.mark.parametrize("arg, words", [
    ("trian.steps=1", "unknown option trian.steps (did you mean train.steps?)"),
    ("train.stpes=1", "unknown option train.stpes (did you mean train.steps?)"),
    ("sed=1", "unknown option sed (did you mean seed?)"),
    ("results_dir=/proc/no/such/folder", "results_dir=/proc/no/such/folder: cannot create it"),
])
def test_one_line_before_hydra(arg, words):
    res = run_cli([arg])
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and words in lines[0], res.stderr[-1500:]


def test_an_empty_request_is_an_empty_result():
    from harness.generation.engines import HFEngine
    from tests.test_models import small

    tok, model = small()
    assert HFEngine(model, tok).generate([], n=4) == []


def test_the_tiny_model_on_a_real_task_warns_up_front(caplog, tmp_path):
    from tests.test_loaders import math_row, write_jsonl

    for split in ("train", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", [math_row(i, split) for i in range(3)])
    with caplog.at_level("WARNING", logger="dqo_bench"):
        check_job(compose(["task=math", f"task.data_dir={tmp_path}"]))
    assert "CPU testbed for task=arith" in caplog.text and "model.name_or_path=" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dqo_bench"):
        check_job(compose(["task=arith"]))
    assert "CPU testbed" not in caplog.text


def test_a_job_stopped_before_any_work_writes_no_leaderboard(tmp_path):
    res = run_cli(["seed=abc", f"results_dir={tmp_path}"])
    lines = [x for x in res.stderr.strip().splitlines() if "WARNING" not in x]
    assert res.returncode == 1 and len(lines) == 1 and "seed='abc'" in lines[0], res.stderr[-1500:]
    assert not (tmp_path / "leaderboard.csv").exists() and not (tmp_path / "runs").exists()


NO_HUB = {"HF_ENDPOINT": "http://127.0.0.1:9"}  # a closed port: the hub out of reach, whatever this machine's network


@pytest.mark.parametrize("args, words", [
    (["model=hf", "model.name_or_path=no-org/no-model"], "not in the local hub cache"),
    (["task=gsm8k"], "gsm8k: cannot reach the Hugging Face hub for openai/gsm8k"),
])
def test_the_hub_out_of_reach_is_one_line_before_any_work(tmp_path, args, words):
    res = run_cli([*args, f"results_dir={tmp_path}"], env=NO_HUB)
    lines = [x for x in res.stderr.strip().splitlines() if "WARNING" not in x]
    assert res.returncode == 1 and len(lines) == 1 and words in lines[0], res.stderr[-1500:]
    assert not (tmp_path / "leaderboard.csv").exists() and not (tmp_path / "runs").exists()


def test_a_model_in_the_hub_cache_loads_while_the_hub_is_out_of_reach(tmp_path):
    """``hf download`` on a connected machine, then a job on an offline one: the cache is used, with no retries."""
    import os
    import subprocess
    import sys

    code = """
import sys
from pathlib import Path
from harness.backbone.models import build_tiny_model, load_model, load_tokenizer, train_tiny_tokenizer
snap = Path(sys.argv[1]) / "models--org--tiny" / "snapshots" / ("0" * 40)
tok = train_tiny_tokenizer(["1 + 2 = 3"] * 20)
build_tiny_model(tok, num_layers=1).save_pretrained(snap)
tok.save_pretrained(snap)
(snap.parent.parent / "refs").mkdir()
(snap.parent.parent / "refs" / "main").write_text("0" * 40)
print(type(load_model("org/tiny")).__name__, type(load_tokenizer("org/tiny")).__name__)
"""
    env = {**os.environ, **NO_HUB, "HF_HUB_CACHE": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "LlamaForCausalLM" in res.stdout, res.stderr[-1500:]
    assert "Retrying" not in res.stderr  # no request to the hub at all (by hub id, transformers asks for an adapter)


def test_a_model_folder_without_config_and_a_broken_data_file_stop_before_any_work(tmp_path):
    with pytest.raises(UserError, match="the folder has no config.json"):
        check_job(compose(["model=hf", f"model.name_or_path={tmp_path}"]))
    (tmp_path / "train.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": \n')
    (tmp_path / "test.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: malformed JSON"):
        check_job(compose(["task=gsm8k", f"task.data_dir={tmp_path}"]))
