"""Dataset loading (tasks/_loaders.py, tasks/_dataset.py): local JSONL, hub fallback errors, subsets."""
import json
import time
from pathlib import Path

import pytest

from harness.backbone.hub import hub_reachable
from harness.errors import UserError
from tasks import get_task
from tasks._loaders import load_hub, load_local, read_jsonl, subset
from tests.conftest import SHARED_DATA

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")


def write_jsonl(path: Path, rows, raw_lines=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def gsm_row(i):
    return {"question": f"Tom has {i} apples and buys 2. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}


def math_row(i, split="train"):
    return {"problem": f"What is ${i}+1$?", "solution": f"It is $\\boxed{{{i + 1}}}$.", "level": "Level 1",
            "type": "Algebra", "unique_id": f"{split}/algebra/{i}.json"}


@pytest.fixture
def gsm_dir(tmp_path):
    write_jsonl(tmp_path / "gsm" / "train.jsonl", [gsm_row(i) for i in range(20)])
    write_jsonl(tmp_path / "gsm" / "test.jsonl", [gsm_row(100 + i) for i in range(5)])
    return tmp_path / "gsm"


def test_read_jsonl_skips_blank_lines(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}], raw_lines=["", "   ", json.dumps({"x": 2})])
    assert [r["x"] for r in read_jsonl(p)] == [1, 2]


@pytest.mark.parametrize("bad, why", [("{not json", "malformed JSON"), ("[1, 2]", "expected a JSON object"),
                                      (json.dumps({"question": "q"}), "missing field(s) answer")])
def test_read_jsonl_reports_file_and_line(tmp_path, bad, why):
    p = write_jsonl(tmp_path / "train.jsonl", [gsm_row(0), gsm_row(1)], raw_lines=[bad])
    with pytest.raises(UserError) as e:
        read_jsonl(p, ("question", "answer"))
    assert f"{p}:3:" in str(e.value) and why in str(e.value)


def test_load_local_says_where_it_looked(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        load_local(tmp_path / "nope", ("train",), (), "gsm8k")
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "train.jsonl", [gsm_row(0)])
    with pytest.raises(UserError, match=r"no test\.jsonl .*looked for .*test\.jsonl"):
        load_local(tmp_path / "d", ("train", "test"), (), "gsm8k")


def test_offline_hub_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        get_task("gsm8k").load_splits()
    msg = str(e.value)
    assert "openai/gsm8k" in msg and "task.data_dir=" in msg and "\n" not in msg
    assert time.perf_counter() - t0 < 1.0


def test_unreachable_endpoint_is_detected_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="HuggingFaceH4/MATH-500.*task.data_dir="):
        load_hub("HuggingFaceH4/MATH-500", [None], ("test",), "math500")
    assert time.perf_counter() - t0 < 5.0


def test_subset_is_seeded_ordered_and_total_when_large():
    recs = [{"i": i} for i in range(100)]
    a, b = subset(recs, 10, 0, "t"), subset(recs, 10, 0, "t")
    assert a == b and len(a) == 10 and [r["i"] for r in a] == sorted(r["i"] for r in a)
    assert subset(recs, 10, 1, "t") != a
    assert subset(recs, None, 0, "t") == recs and subset(recs, 1000, 0, "t") == recs and subset(recs, 0, 0, "t") == []


def test_gsm8k_local_folder_with_subsets(gsm_dir):
    task = get_task("gsm8k", data_dir=str(gsm_dir), n_train=7, n_test=3, seed=1)
    s = task.load_splits()
    assert len(s["train"]) == 7 and len(s["test"]) == 3
    assert all(r["id"].startswith("gsm8k-train-") for r in s["train"])
    assert len({r["id"] for r in s["train"] + s["test"]}) == 10
    again = get_task("gsm8k", data_dir=str(gsm_dir), n_train=7, n_test=3, seed=1).load_splits()
    assert [r["id"] for r in again["train"]] == [r["id"] for r in s["train"]]  # deterministic
    full = get_task("gsm8k", data_dir=str(gsm_dir)).load_splits()
    assert len(full["train"]) == 20 and full["train"][4]["id"] == "gsm8k-train-00004"


def test_malformed_local_file_names_file_and_line(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [gsm_row(0)], raw_lines=['{"question": "q", "answer": '])
    write_jsonl(tmp_path / "test.jsonl", [gsm_row(1)])
    with pytest.raises(UserError, match=r"train\.jsonl:2: malformed JSON"):
        get_task("gsm8k", data_dir=str(tmp_path)).load_splits()


def test_math500_takes_train_from_sibling_math_folder(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "math" / "train.jsonl", [math_row(i) for i in range(12)])
    write_jsonl(tmp_path / "math" / "test.jsonl", [math_row(i, "test") for i in range(4)])
    write_jsonl(tmp_path / "math500" / "test.jsonl",
                [{**math_row(i, "test"), "answer": str(i + 1), "subject": "Algebra", "level": 1} for i in range(3)])
    s = get_task("math500", data_dir=str(tmp_path / "math500")).load_splits()
    assert len(s["train"]) == 12 and len(s["test"]) == 3
    assert s["test"][0]["id"] == "test/algebra/0.json"
    # without a MATH train split anywhere local, and no hub: one line naming the fix
    write_jsonl(tmp_path / "x" / "alone" / "test.jsonl", [math_row(0, "test")])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="EleutherAI/hendrycks_math.*train_data_dir"):
        get_task("math500", data_dir=str(tmp_path / "x" / "alone")).load_splits()
    explicit = get_task("math500", data_dir=str(tmp_path / "x" / "alone"), train_data_dir=str(tmp_path / "math"))
    assert len(explicit.load_splits()["train"]) == 12


def test_bad_options():
    with pytest.raises(UserError, match="n_train"):
        get_task("gsm8k", n_train=-1)
    with pytest.raises(UserError, match="prompt_style"):
        get_task("math", prompt_style="fancy").prompt({"problem": "1+1?"})


@needs_shared
@pytest.mark.parametrize("name, n_train, n_test", [("gsm8k", 7473, 1319), ("math", 7498, 5000), ("math500", 7498, 500)])
def test_shared_data_loads(name, n_train, n_test):
    """MATH train: 7,500 less the two solutions with an empty \\boxed{} (dropped with a warning)."""
    s = get_task(name, data_dir=str(SHARED_DATA / name)).load_splits()
    assert (len(s["train"]), len(s["test"])) == (n_train, n_test)
    assert len({r["id"] for r in s["train"] + s["test"]}) == n_train + n_test


def test_an_empty_split_file_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    with pytest.raises(UserError, match=r"train.jsonl has no records \(an empty file\)"):
        load_local(tmp_path, ("train", "test"), (), "gsm8k")
