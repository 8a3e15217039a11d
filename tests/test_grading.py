"""The numeric grader: answer extraction, number parsing and comparison (tasks/_grading.py)."""
from fractions import Fraction

import pytest

from tasks import get_task
from tasks._grading import extract_numeric_answer, last_boxed, numbers_equal, parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("18", 18), ("18.0", 18), ("$18.00", 18), ("1,000", 1000), ("-3", -3), ("18.", 18),
        ("3/4", Fraction(3, 4)), ("50%", 50), ("18 apples", 18), ("2.5", 2.5), ("$1,234,567.50", 1234567.5),
        ("\u22125", -5), ("\\frac{1}{2}", Fraction(1, 2)), ("-\\dfrac{3}{4}", Fraction(-3, 4)), ("8/2", 4),
        ("1{,}000", 1000), ("no number here", None), ("", None),
    ],
)
def test_parse_number(text, expected):
    got = parse_number(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("#### 18", 18),
        (" 12 + 6 = 18\n#### 18", 18),
        ("5 + 5 = 10\n#### 10\nextra 99", 10),  # "####" beats a later stray number
        ("#### 3\n#### 4", 4),  # the last "####" wins
        ("so she has 7 left. The answer is 7.", 7),
        ("The answer is: $1,000.", 1000),
        ("she had 3, then 4, then 12", 12),  # last number fallback
        ("the total is \\boxed{18}.", 18),
        ("\\boxed{\\frac{1}{2}}", Fraction(1, 2)),
        ("first \\boxed{3} then \\boxed{{5}}", 5),
        ("$\\boxed 7$", 7),
        ("\\fbox{42}", 42),
        ("12-3 is 9", 9),
        ("she owes -4", -4),
        ("#### -4", -4),
        ("no digits at all", None),
        ("", None),
    ],
)
def test_extract_numeric_answer(completion, expected):
    assert extract_numeric_answer(completion) == expected


def test_last_boxed():
    assert last_boxed("a \\boxed{x^{2}} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed 5$ and more") == "5"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("nothing boxed") is None
    assert last_boxed("\\boxed{}") == ""


def test_numbers_equal():
    assert numbers_equal(18, 18.0) and numbers_equal(18, Fraction(18)) and numbers_equal(18.0, Fraction(36, 2))
    assert numbers_equal(0.1 + 0.2, Fraction(3, 10))
    assert not numbers_equal(18, 19) and not numbers_equal(0.5, 0.6)
    big = 10**30
    assert numbers_equal(big, big) and not numbers_equal(big, big + 1)  # exact, not within tolerance
    assert numbers_equal(10**400, 10**400) and not numbers_equal(10**400, 10**400 + 1)
    assert not numbers_equal(1e300, 10**400)
    assert numbers_equal(-3, -3.0) and not numbers_equal(-3, 3)
    assert numbers_equal(0, 0.0)


@pytest.fixture(scope="module")
def task():
    return get_task("arith", n_train=0, n_test=0)


@pytest.mark.parametrize(
    "completion, score",
    [
        ("#### 18", 1.0), ("#### 18.0", 1.0), ("#### $18.00", 1.0), ("The answer is 18.", 1.0),
        ("\\boxed{18}", 1.0), ("6 * 3 = 18", 1.0), ("#### 19", 0.0), ("#### 17\nbut really 18", 0.0),
        ("I don't know", 0.0), ("", 0.0),
    ],
)
def test_grade_by_hand(task, completion, score):
    assert task.grade(completion, {"id": "x", "question": "?", "answer": "6 * 3 = 18\n#### 18"}) == score


def test_grade_thousands_and_huge_and_negative(task):
    assert task.grade("#### 1,000", {"answer": "#### 1000"}) == 1.0
    assert task.grade("#### 1000", {"answer": "#### 1,000"}) == 1.0
    huge = 123456789012345678901234567890
    assert task.grade(f"#### {huge}", {"answer": f"#### {huge}"}) == 1.0
    assert task.grade(f"#### {huge + 1}", {"answer": f"#### {huge}"}) == 0.0
    assert task.grade("#### -7", {"answer": "#### -7"}) == 1.0
    assert task.grade("#### 7", {"answer": "#### -7"}) == 0.0
