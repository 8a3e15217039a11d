"""Fuzzing the graders and loaders with hypothesis (docs/design.md §5, §7): arbitrary strings and malformed records
never raise, never run past the per-item limit, and a perturbed gold answer is never graded correct.

``pytest tests/test_fuzz.py --hypothesis-show-statistics`` prints how many examples ran. The suite draws the
same examples every run (``derandomize``, so CI never turns red on a draw it did not make before); to explore
new ones: ``HYPOTHESIS_PROFILE=explore pytest tests/test_fuzz.py``.
"""
import json
import os
import re
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.errors import UserError
from tasks import get_task
from tasks._grading import extract_math_answer, extract_numeric_answer, math_answers_equal
from tasks._loaders import read_jsonl
from tests.conftest import SHARED_DATA

settings.register_profile("explore", derandomize=False, max_examples=2000)
FUZZ = settings(settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "default")), max_examples=int(
    os.environ.get("FUZZ_EXAMPLES", 300)), deadline=None, derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "explore",
    suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMIT_S = 2.0  # the per-item grading limit used here (task.timeout_s)
GSM, MATH, ARITH = get_task("gsm8k"), get_task("math", timeout_s=LIMIT_S), get_task("arith")

# Text that looks like model output: digits, LaTeX commands, braces, answer markers, any unicode.
latexy = st.text(alphabet=st.sampled_from(list("0123456789+-*/^_=.,()[]{}$ \n\\#xyzabc%!")) | st.characters(),
                 max_size=300)
fragments = st.lists(st.sampled_from(["\\boxed{", "\\fbox{", "}", "{", "#### ", "The answer is ", "\\frac",
                                      "\\sqrt", "\\left(", "\\right)", "=", "x", "1", "0.5", ",", "\\text{",
                                      "\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "$", "^{", "!", "%",
                                      "1/0", "\\infty", "9" * 40]) | latexy, max_size=30).map("".join)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


@FUZZ
@given(completion=fragments, gold=fragments)
def test_math_grader_never_raises_nor_hangs(completion, gold):
    ex = {"problem": "?", "solution": f"so \\boxed{{{gold}}}"}
    score, took = timed(MATH.grade, completion, ex)
    assert score in (0.0, 1.0) and took < LIMIT_S + 1.0
    assert extract_math_answer(completion) is None or isinstance(extract_math_answer(completion), str)


@FUZZ
@given(completion=fragments, gold=st.integers(-10**6, 10**6))
def test_gsm8k_and_arith_graders_never_raise(completion, gold):
    for task, ex in ((GSM, {"question": "?", "answer": f"#### {gold}"}), (ARITH, {"question": "?", "answer": f"#### {gold}"})):
        score, took = timed(task.grade, completion, ex)
        assert score in (0.0, 1.0) and took < 1.0
    extract_numeric_answer(completion)


numbers = st.one_of(st.integers(-10**9, 10**9), st.fractions(-10**6, 10**6, max_denominator=1000))
nonzero = st.one_of(st.integers(1, 10**9), st.fractions(min_value=Fraction(1, 1000), max_value=10**6,
                                                     max_denominator=1000)).flatmap(lambda d: st.sampled_from([d, -d]))


def gsm_text(v) -> str:
    v = Fraction(v)
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


@FUZZ
@given(gold=numbers, delta=nonzero, noise=st.text(alphabet=st.characters(blacklist_categories=["Nd"],
                                                                          blacklist_characters="#"), max_size=80))
def test_gsm8k_grades_the_gold_answer_and_never_a_perturbed_one(gold, delta, noise):
    ex = {"question": "?", "answer": f"work\n#### {gsm_text(gold)}"}
    assert GSM.grade(f"{noise}\n#### {gsm_text(gold)}", ex) == 1.0
    assert GSM.grade(f"{noise}\n#### {gsm_text(Fraction(gold) + Fraction(delta))}", ex) == 0.0


def latex_number(v: Fraction) -> str:
    sign = "-" if v < 0 else ""
    v = abs(v)
    return f"{sign}{v.numerator}" if v.denominator == 1 else f"{sign}\\frac{{{v.numerator}}}{{{v.denominator}}}"


@FUZZ
@given(gold=numbers, delta=nonzero, var=st.sampled_from(["x", "y", "k", "n"]), eq=st.booleans())
def test_math_grades_the_gold_answer_and_never_a_perturbed_one(gold, delta, var, eq):
    gold, delta = Fraction(gold), Fraction(delta)
    g = f"{var} = {latex_number(gold)}" if eq else latex_number(gold)
    ex = {"problem": "?", "solution": f"so $\\boxed{{{g}}}$."}
    assert MATH.grade(f"We get $\\boxed{{{latex_number(gold)}}}$.", ex) == 1.0
    assert MATH.grade(f"We get $\\boxed{{{latex_number(gold + delta)}}}$.", ex) == 0.0
    assert MATH.grade(f"We get $\\boxed{{{var} = {latex_number(gold + delta)}}}$.", ex) == 0.0
    if eq:  # an equation with a changed left-hand side (MATH-500's corrupted answers)
        assert MATH.grade(f"$\\boxed{{{latex_number(delta)}+{g}}}$", ex) == 0.0


@pytest.fixture(scope="module")
def math500_answers():
    path = SHARED_DATA / "math500" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return [json.loads(line)["answer"] for line in path.open()]


@FUZZ
@given(i=st.integers(0, 499), data=st.data())
def test_a_perturbed_math500_answer_is_never_graded_correct(math500_answers, i, data):
    """A digit of a real gold answer changed, or a term added in front of it."""
    gold = math500_answers[i]
    # a unit's exponent is not the answer's value: units are ignored, as Minerva's normalisation does (cm^2, cm^3)
    units = [range(*m.span()) for m in re.finditer(r"\\(?:mbox|text)\{[^{}]*\}\^\{?\d+\}?", gold)]
    digits = [j for j, c in enumerate(gold) if c.isdigit() and not any(j in u for u in units)]
    how = data.draw(st.sampled_from(["digit", "prefix"]) if digits else st.just("prefix"))
    if how == "digit":
        j = data.draw(st.sampled_from(digits))
        bad = gold[:j] + str((int(gold[j]) + data.draw(st.integers(1, 9))) % 10) + gold[j + 1:]
    else:
        bad = "98765+" + gold
    assume(bad != gold)
    assert not math_answers_equal(bad, gold, timeout_s=LIMIT_S), (gold, bad)


# ---- loaders ---------------------------------------------------------------------------------------
lines = st.one_of(
    st.text(max_size=120),
    st.dictionaries(st.sampled_from(["question", "answer", "problem", "solution", "x"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=40), st.lists(st.integers(), max_size=3)),
                    max_size=5).map(json.dumps),
    st.sampled_from(['{"question": "q", "answer": "#### 1"}', "[]", "null", "{", '{"question": 1}', "\ufeff{}"]),
)


@FUZZ
@given(content=st.lists(lines, max_size=8))
def test_malformed_jsonl_is_a_user_error_naming_the_line_or_loads(tmp_path_factory, content):
    d = tmp_path_factory.mktemp("data")
    for split in ("train", "test"):
        (d / f"{split}.jsonl").write_text("\n".join(content) + "\n", encoding="utf-8")
    try:
        records = read_jsonl(d / "train.jsonl", ("question", "answer"))
    except UserError as e:
        assert "\n" not in str(e) and "train.jsonl" in str(e)
        return
    assert all(isinstance(r["question"], str) and isinstance(r["answer"], str) for r in records)


@FUZZ
@given(content=st.lists(lines, max_size=8), name=st.sampled_from(["gsm8k", "math"]))
def test_a_task_over_malformed_files_stops_with_one_line_or_grades_its_records(tmp_path_factory, content, name):
    d = tmp_path_factory.mktemp("data")
    for split in ("train", "test"):
        (d / f"{split}.jsonl").write_bytes(("\n".join(content) + "\n").encode("utf-8", "surrogatepass"))
    task = get_task(name, data_dir=str(d))
    try:
        task.check_source()
        splits = task.load_splits()
    except UserError as e:
        assert "\n" not in str(e)
        return
    for ex in splits["test"]:
        task.prompt(ex)
        assert task.grade(task.solution_text(ex), ex) in (0.0, 1.0)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_arbitrary_bytes_are_a_user_error_naming_the_line_or_load(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_bytes(blob)
    try:
        read_jsonl(path, ("question", "answer"))
    except UserError as e:
        assert "\n" not in str(e) and str(path) in str(e)
