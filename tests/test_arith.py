"""The procedurally generated ``arith`` task (tasks/arith.py)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError
from tasks import get_task

CFG = {"n_train": 600, "n_test": 100, "n_demo": 1000}
LINE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task():
    return get_task("arith", **CFG)


@pytest.fixture(scope="module")
def splits(task):
    return task.load_splits()


def _all(splits):
    return splits["train"] + splits["test"]


def test_sizes_ids_and_format(splits):
    assert len(splits["train"]) == CFG["n_train"] and len(splits["test"]) == CFG["n_test"]
    for split, recs in splits.items():
        assert [r["id"] for r in recs] == [f"arith-{split}-{i:05d}" for i in range(len(recs))]
        for r in recs:
            assert set(r) == {"id", "question", "answer"}
            assert r["question"].endswith("have now?") and r["answer"].splitlines()[-1].startswith("#### ")


def test_deterministic(task, splits):
    again = get_task("arith", **CFG).load_splits()
    assert again == splits
    other = get_task("arith", seed=1, **CFG).load_splits()
    assert [r["question"] for r in other["train"]] != [r["question"] for r in splits["train"]]
    assert task.load_splits() is splits  # cached on the instance


def test_independent_of_hash_seed():
    code = "from tasks import get_task; s = get_task('arith', n_train=50, n_test=10).load_splits(); print(repr(s))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": hs, "PYTHONPATH": str(ROOT)},
        ).stdout
        for hs in ("0", "123")
    }
    assert len(outs) == 1


def test_test_split_independent_of_n_train(splits):
    smaller = get_task("arith", n_train=10, n_test=CFG["n_test"]).load_splits()
    assert smaller["test"] == splits["test"]


def test_disjoint_and_unique(task, splits):
    qs = {name: [r["question"] for r in recs] for name, recs in {**splits, "demo": task.load_demos()}.items()}
    for q in qs.values():
        assert len(set(q)) == len(q)
    assert not set(qs["train"]) & set(qs["test"]) and not set(qs["demo"]) & (set(qs["train"]) | set(qs["test"]))


def test_no_split_depends_on_the_size_of_another(task, splits):
    """A question's split is fixed by its own hash, so π_ref's demonstrations (and a shipped π_ref) stay the same
    whatever n_train or n_test, and the RL prompts whatever n_demo."""
    other = get_task("arith", n_train=50, n_test=7, n_demo=3000)
    assert other.load_demos()[:1000] == task.load_demos()
    assert other.load_splits()["train"] == splits["train"][:50] and other.load_splits()["test"] == splits["test"][:7]


def test_gold_solutions_grade_one_and_wrong_zero(task, splits):
    for ex in _all(splits):
        assert task.grade(task.solution(ex), ex) == 1.0
        n = int(task.gold_answer(ex))
        assert task.grade(f" #### {n + 1}", ex) == 0.0
        assert task.extract_answer(task.solution(ex)) == str(n)


def test_solution_lines_compute_and_obey_constraints(task, splits):
    c = task.cfg
    for split, ex in [("train", ex) for ex in splits["train"]] + [("test", ex) for ex in splits["test"]]:
        *lines, final = ex["answer"].splitlines()
        lo, hi = (c["test_min_steps"], c["test_max_steps"]) if split == "test" else (c["min_steps"], c["max_steps"])
        assert lo <= len(lines) <= hi
        prev = None
        for line in lines:
            m = LINE.match(line)
            assert m, line
            a, op, b, r = int(m[1]), m[2], int(m[3]), int(m[4])
            if prev is None:
                assert 1 <= a <= c["max_operand"]
                assert f" has {a} " in ex["question"]
            else:
                assert a == prev  # each step continues from the previous result
            if op == "+":
                assert 1 <= b <= c["max_operand"] and r == a + b
            elif op == "-":
                assert 1 <= b <= c["max_operand"] and r == a - b and r >= 1
            elif op == "*":
                assert 2 <= b <= c["max_factor"] and r == a * b <= c["max_product"]
            else:
                assert 2 <= b <= c["max_factor"] and a % b == 0 and r == a // b
            prev = r
        assert final == f"#### {prev}"


def test_every_step_count_and_op_appear(splits):
    steps = {len(r["answer"].splitlines()) - 1 for r in splits["train"]}
    ops = {LINE.match(l)[2] for r in splits["train"] for l in r["answer"].splitlines()[:-1]}
    assert steps == {2, 3, 4, 5, 6} and ops == set("+-*/")


def test_knobs():
    recs = get_task("arith", n_train=200, n_test=20, n_demo=50, min_steps=1, max_steps=1, test_min_steps=1,
                    test_max_steps=1, max_operand=5)
    for ex in recs.load_splits()["train"] + recs.load_splits()["test"] + recs.load_demos():
        assert len(ex["answer"].splitlines()) == 2
    with pytest.raises(UserError):
        get_task("arith", min_steps=3, max_steps=2)
    with pytest.raises(UserError, match="test_min_steps=4 > task.test_max_steps=3"):
        get_task("arith", test_min_steps=4, test_max_steps=3)
    with pytest.raises(UserError):  # the problem space is too small for this many distinct questions
        get_task("arith", n_train=10**6, n_test=1, n_demo=1, min_steps=1, max_steps=1, max_operand=1, max_factor=2,
                 max_product=2).load_splits()
    with pytest.raises(UserError, match="unknown option task.bogus"):
        get_task("arith", bogus=1)
    with pytest.raises(UserError, match=r"task.max_factor=1 is out of range: it must be >= 2"):
        get_task("arith", max_factor=1)


def test_the_test_split_reaches_beyond_the_training_range():
    task = get_task("arith", n_train=300, n_test=400, n_demo=300, min_steps=1, max_steps=3, test_min_steps=1,
                    test_max_steps=6)
    recs = task.load_splits()
    assert {task.chain_length(r) for r in recs["test"]} == set(range(1, 7))
    assert {task.chain_length(r) for r in recs["train"] + task.load_demos()} == {1, 2, 3}
    assert task.train_chain_range() == (1, 3)
    assert all(task.chain_length(r) == len(r["answer"].splitlines()) - 1 for r in recs["test"])


def test_a_misreading_teacher_adds_where_it_should_multiply():
    """``misread``: each "k times as many" (k >= misread_from) of a demonstration becomes "+ k" with that probability,
    and the solution carries on from it; "twice" stays read right; the questions, the splits the RL prompts and the
    test come from, and the recipe at misread=0 are untouched."""
    opts = dict(n_demo=400, n_train=50, n_test=50, max_factor=5, max_product=500, max_operand=50)
    gold, always = get_task("arith", **opts, misread=0.0), get_task("arith", **opts, misread=1.0)
    assert gold.load_splits() == always.load_splits()
    changed = 0
    for g, m in zip(gold.load_demos(), always.load_demos()):
        assert g["question"] == m["question"]
        v = None
        for gl, ml in zip(g["answer"].split("\n")[:-1], m["answer"].split("\n")[:-1]):
            _, gop, k, _, _ = gl.split()
            start, op, n, _, new = ml.split()
            assert n == k and (v is None or int(start) == v)
            assert op == ("+" if gop == "*" and int(k) >= 3 else gop)
            v = int(new)
            assert v == {"+": int(start) + int(n), "-": int(start) - int(n), "*": int(start) * int(n),
                         "/": int(start) // int(n)}[op]
        assert m["answer"].endswith(f"#### {v}")
        changed += g["answer"] != m["answer"]
    assert changed > 50
    some = get_task("arith", **opts, misread=0.5).load_demos()
    share = sum(a["answer"] != b["answer"] for a, b in zip(some, gold.load_demos())) / changed
    assert 0.5 < share < 0.9  # a demonstration with j such steps keeps all j right with probability 0.5^j
    assert "misread" in gold.not_in_demos and "misread" not in always.not_in_demos
