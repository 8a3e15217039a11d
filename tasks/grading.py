"""Pure helpers for grading numeric final answers (GSM8K style).

``extract_numeric_answer(completion)`` finds the model's answer, ``parse_number`` reads one number
out of a string and ``numbers_equal`` compares two numbers: exactly when both are exact (int or
Fraction), with a relative tolerance when either is a float.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

Number = int | float | Fraction

# One number: optional sign (not after a word or ")" so "12-3" reads 12 and 3), an integer part with
# optional thousands commas, an optional decimal part, an optional "/ denominator".
_NUM = re.compile(
    r"(?<![\d.])(?P<neg>(?<![\w)])-)?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)"
    r"(?P<dec>\.\d*)?(?!\d)"
    r"(?:\s*/\s*(?P<den>\d+)(?![\d.]))?"
)
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"\banswer\s+is\b:?([^\n]*)", re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _normalize(s: str) -> str:
    """Unicode minus to "-", LaTeX ``{,}`` to ",", ``\\frac{a}{b}`` to ``a/b``."""
    s = s.replace("\u2212", "-").replace("{,}", ",")
    return _LATEX_FRAC.sub(lambda m: f"{m.group(1) or m.group(2)}/{m.group(3) or m.group(4)}", s)


def _to_number(m: re.Match) -> Number:
    """The value of one ``_NUM`` match: int when integral, Fraction for a/b, float for decimals."""
    sign = -1 if m.group("neg") else 1
    whole = int(m.group("int").replace(",", ""))
    dec, den = m.group("dec"), m.group("den")
    if dec and dec.strip(".0"):
        return sign * float(f"{whole}{dec}")
    if den is not None and not dec and int(den) != 0:
        value = Fraction(sign * whole, int(den))
        return value.numerator if value.denominator == 1 else value
    return sign * whole


def _numbers(s: str) -> list[Number]:
    return [_to_number(m) for m in _NUM.finditer(_normalize(s))]


def parse_number(s: str) -> Number | None:
    """The first number in ``s`` ("$1,000.00" -> 1000, "3/4" -> Fraction(3, 4), "50%" -> 50), or None.

    Currency signs, percent signs and trailing units are ignored; "18." and "18.0" read as 18.
    """
    nums = _numbers(s)
    return nums[0] if nums else None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed) or ``\\boxed 5``."""
    for m in reversed(list(_BOX.finditer(text))):
        rest = text[m.end():]
        body = rest.lstrip()
        if body.startswith("{"):
            depth = 0
            for i, ch in enumerate(body):
                depth += (ch == "{") - (ch == "}")
                if depth == 0:
                    return body[1:i]
        elif body and rest[:1].isspace():
            return re.split(r"[\s$]", body, maxsplit=1)[0]
    return None


def extract_numeric_answer(completion: str) -> Number | None:
    """The model's final answer: last ``#### N``, else last ``\\boxed{N}``, else "the answer is N",
    else the last number in the text; None when there is no number at all."""
    for m in reversed(_HASHES.findall(completion)):
        if (value := parse_number(m)) is not None:
            return value
    boxed = last_boxed(completion)
    if boxed is not None and (value := parse_number(boxed)) is not None:
        return value
    for m in reversed(_ANSWER_IS.findall(completion)):
        if (value := parse_number(m)) is not None:
            return value
    nums = _numbers(completion)
    return nums[-1] if nums else None


def numbers_equal(a: Number, b: Number, rel_tol: float = 1e-6) -> bool:
    """``a == b`` for exact numbers (int, Fraction: huge ints stay exact); within ``rel_tol`` if a float."""
    if isinstance(a, float) or isinstance(b, float):
        if any(isinstance(x, float) and not math.isfinite(x) for x in (a, b)):
            return a == b
        fa, fb = Fraction(a), Fraction(b)
        return abs(fa - fb) <= Fraction(rel_tol) * max(abs(fa), abs(fb))
    return Fraction(a) == Fraction(b)
