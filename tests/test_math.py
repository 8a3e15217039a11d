"""The MATH grader (tasks/math.py, tasks/_grading.py): answer extraction, equivalence, time limits, steps."""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tasks._grading as grading
from harness.generation.grade_parallel import grade_many
from tasks import get_task
from tasks._grading import clean_latex, extract_math_answer, last_boxed, math_answers_equal, normalize_math_answer
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def task():
    return get_task("math")


def ex(answer: str) -> dict:
    return {"problem": "p", "solution": f"Work. So the answer is $\\boxed{{{answer}}}$.", "level": "Level 1",
            "type": "Algebra"}


def test_gold_answer_is_last_box_with_nesting(task):
    sol = "First $\\boxed{1}$, then $x = \\boxed{\\frac{\\sqrt{3}}{2}}$."
    assert task.gold_answer({"solution": sol}) == "\\frac{\\sqrt{3}}{2}"
    assert task.gold_answer({"solution": "so \\fbox{7}"}) == "7"
    assert task.gold_answer({"solution": "so $\\boxed 5$."}) == "5"
    assert task.gold_answer({"solution": "no box"}) is None


@pytest.mark.parametrize("completion, gold", [
    ("The answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("$\\boxed{\\dfrac12}$", "\\frac{1}{2}"),             # \dfrac and brace-less arguments
    ("$\\boxed{0.5}$", "\\frac{1}{2}"),                  # decimal vs fraction
    ("$\\boxed{\\frac{\\sqrt3}{2}}$", "\\frac{\\sqrt{3}}{2}"),
    ("$\\boxed{\\frac \\pi4 + 2 - \\sqrt2}$", "\\frac{\\pi}{4}+2-\\sqrt{2}"),
    ("$\\boxed{1+x^2}$", "x^2+1"),                       # symbolic equivalence
    ("$\\boxed{x = 3}$", "3"),                           # "x =" prefix
    ("$\\boxed{5}$", "x=5"), ("$\\boxed{2x+3}$", "y = 2x + 3"),  # a value for "variable = value"
    ("$\\boxed{y=2x+3}$", "y = 2x + 3"), ("$\\boxed{5x-7y+11z=-4}$", "5x - 7y + 11z + 4 = 0"),  # equations whole
    ("$\\boxed{(1, 2)}$", "(1,2)"),
    ("$\\boxed{[-2, 7)}$", "[-2,7)"),
    ("$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("$\\boxed{\\text{(C)}}$", "\\text{(C)}"),
    ("$\\boxed{C}$", "\\text{(C)}"),
    ("$\\boxed{90^\\circ}$", "90"),                      # units and degrees ignored (Minerva)
    ("$\\boxed{864 \\mbox{ inches}^2}$", "864"),
    ("$\\boxed{25\\%}$", "25"),
    ("$\\boxed{1,000,000}$", "1000000"),
    ("$\\boxed{29,\\!322,\\!216}$", "29322216"),
    ("$\\boxed{52_8}$", "52_8"), ("$\\boxed{52_{8}}$", "52_8"), ("$\\boxed{52}$", "52_8"),
    ("$\\boxed{\\$18.90}$", "18.90"),
    ("$\\boxed{10^{100}}$", "10^{100}"),
    ("\\fbox{7}", "7"), ("so $\\boxed 7$.", "7"),
    ("blah\n#### 12", "12"), ("So the answer is $3\\sqrt{2}$.", "3\\sqrt2"),
    ("$\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}$", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
])
def test_correct(task, completion, gold):
    assert task.grade(completion, ex(gold)) == 1.0


@pytest.mark.parametrize("completion, gold", [
    ("$\\boxed{\\frac{1}{3}}$", "\\frac{1}{2}"),
    ("$\\boxed{19}$", "18"),
    ("$\\boxed{x^2-1}$", "x^2+1"),
    ("$\\boxed{(1, 3)}$", "(1,2)"),
    ("$\\boxed{[-2, 7]}$", "[-2,7)"),
    ("$\\boxed{\\text{(B)}}$", "\\text{(C)}"),
    ("$\\boxed{52_9}$", "52_8"),                        # another base: math-verify alone drops the subscript
    ("$\\boxed{\\frac{1}{2005!}}$", "\\frac{1}{2004!}"),  # 6-decimal rounding alone would call these equal
    ("$\\boxed{\\frac{1}{3^{98}}}$", "\\frac{1}{2^{98}}"),
    ("$\\boxed{10^{100}+1}$", "10^{100}"),              # huge exact numbers stay exact
    ("$\\boxed{100000000000000000001}$", "100000000000000000000"),
    ("$\\boxed{\\frac \\pi4 + 2 - \\sqrt3}$", "\\frac{\\pi}{4}+2-\\sqrt{2}"),
    ("$\\boxed{98765+x=5}$", "x=5"),                    # equations are compared whole, not after the last "="
    ("$\\boxed{98765+y = 2x + 3}$", "y = 2x + 3"), ("$\\boxed{98765+5x - 7y + 11z + 4 = 0}$", "5x - 7y + 11z + 4 = 0"),
    ("$\\boxed{0}$", "5x - 7y + 11z + 4 = 0"),          # a value is no equation
    ("$\\boxed{98765+x=5}$", "5"),
    ("the value is 18", "18"),                          # no box, no "answer is": no answer
    ("", "18"), ("$\\boxed{}$", "18"), ("$\\boxed{18", "18"),  # malformed
    ("$\\boxed{\\frac{1}{2}}$", ""),                    # a gold solution with an empty box grades nothing
])
def test_incorrect(task, completion, gold):
    assert task.grade(completion, ex(gold)) == 0.0


def test_malformed_latex_never_raises(task):
    for junk in ["\\boxed{\\frac{", "\\boxed{}}}}", "\\boxed{\\left(}", "\\boxed{\\sqrt[}", "\\boxed{$$}",
                 "\\boxed{" + "(" * 200 + "}", "\\boxed{" + "1+" * 1000 + "1}"]:
        assert task.grade(junk, ex("1")) == 0.0


def test_extract_answer_order():
    assert extract_math_answer("#### 3 and \\boxed{4}") == "4"
    assert extract_math_answer("x\n#### 3\n") == "3"
    assert extract_math_answer("The answer is: $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_math_answer("no answer") is None


def test_normalisation():
    assert normalize_math_answer("\\text{ 5 } \\mbox{ cm}") == normalize_math_answer("5")
    assert normalize_math_answer("\\dfrac{1}{2}") == normalize_math_answer("\\frac12")
    assert clean_latex("\\frac{1}{\\frac12}") == "\\frac{1}{\\frac{1}{2}}"
    assert clean_latex("\\sqrt[3]{2}.") == "\\sqrt[3]{2}"


def test_timeout_counts_as_wrong(monkeypatch):
    def slow(pred, gold):
        time.sleep(5)
        return True

    monkeypatch.setattr(grading, "math_verify_equal", slow)
    t0 = time.perf_counter()
    assert not math_answers_equal("x+1", "y", timeout_s=0.2)
    assert time.perf_counter() - t0 < 2


def test_grades_in_threads(task):
    """math-verify's own timeouts use signals, which raise off the main thread; ours must not."""
    cases = [("$\\boxed{0.5}$", "\\frac12", 1.0), ("$\\boxed{1+x^2}$", "x^2+1", 1.0), ("$\\boxed{3}$", "4", 0.0)] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: task.grade(c[0], ex(c[1])), cases))
    assert got == [c[2] for c in cases]
    assert threading.current_thread() is threading.main_thread()


def test_grade_many_process_pool_matches_serial(task, caplog):
    comps = ["$\\boxed{0.5}$", "$\\boxed{1+x^2}$", "$\\boxed{3}$", "junk"] * 8
    exs = [ex("\\frac12"), ex("x^2+1"), ex("4"), ex("1")] * 8
    with caplog.at_level("INFO", logger="dqo_bench"):
        got = grade_many(task, comps, exs, workers=2, min_parallel=0, desc="t")
    assert got == [1.0, 1.0, 0.0, 0.0] * 8
    assert "items/s" in caplog.text and "2 processes" in caplog.text


def test_math500_is_registered():
    t = get_task("math500")
    assert t.name == "math500" and t.grade("\\boxed{2}", ex("2")) == 1.0


@pytest.mark.skipif(not (SHARED_DATA / "math500").is_dir(), reason=f"no shared data at {SHARED_DATA}")
def test_math500_gold_solutions_and_prm800k_answers():
    recs = [json.loads(line) for line in (SHARED_DATA / "math500" / "test.jsonl").open()]
    t = get_task("math500")
    assert sum(t.grade(r["solution"], r) for r in recs) == 500
    assert sum(t.grade(f"\\boxed{{{r['answer']}}}", r) for r in recs) == 500
    assert last_boxed(recs[0]["solution"]) is not None
