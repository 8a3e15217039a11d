"""Pure helpers for grading final answers.

Numeric (GSM8K, arith): ``extract_numeric_answer(completion)`` finds the model's answer,
``parse_number`` reads one number out of a string and ``numbers_equal`` compares two numbers: exactly
when both are exact (int or Fraction), with a relative tolerance when either is a float.

Symbolic (MATH): ``extract_math_answer`` and ``math_answers_equal`` (normalised strings, then
math-verify under a per-item time limit that is safe in threads).
"""
from __future__ import annotations

import logging
import math
import re
import signal
import threading
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache

Number = int | float | Fraction
# math-verify warns once per process that its own timeouts are off: we time the whole comparison ourselves.
logging.getLogger("math_verify").setLevel(logging.ERROR)

# One number: optional sign (not after a word or ")" so "12-3" reads 12 and 3), an integer part with
# optional thousands commas and an optional decimal part, or a bare decimal part (".5"), then an optional
# "/ denominator".
_NUM = re.compile(
    r"(?<![\d.])(?P<neg>(?<![\w)])-)?"
    r"(?:(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d*)?|(?P<bare>\.\d+))(?!\d)"
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
    if m.group("bare"):  # ".5"
        return sign * float("0" + m.group("bare"))
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


# ---- MATH answers (symbolic) ----------------------------------------------------------------------
# The gold answer is the last \boxed{} of the gold solution (Hendrycks et al. 2021); a completion's
# answer likewise. Two answers are equal when (1) their normalised strings match, or (2) math-verify
# (Hugging Face, the checker behind the Open LLM Leaderboard's MATH scores) says they are equivalent.
# math-verify's own timeouts use SIGALRM, which raises in threads; we switch them off and put one
# timer around the whole comparison instead, armed only where signals work (a process's main thread).

_MINERVA_SUBSTITUTIONS = [  # Lewkowycz et al. 2022 (Minerva), App. D.1, `normalize_final_answer`
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
    (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
]
_MINERVA_REMOVED = [
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"',
    "\\dots",
]
#: answers longer than this skip math-verify (sympy can take minutes on them; string match only)
MAX_SYMBOLIC_CHARS = 400
_HASH_ANSWER = re.compile(r"####[ \t]*([^\n]+)")
_ANSWER_IS_TEXT = re.compile(r"answer\s+is\s*:?\s*([^\n]+)", re.IGNORECASE)


def _latex_arg(s: str, i: int) -> tuple[str, int] | None:
    """One TeX argument at ``s[i:]`` (spaces skipped): a ``{...}`` group, a ``\\command`` or one character;
    ``(text without braces, end index)``."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] == "}":
        return None
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += (s[j] == "{") - (s[j] == "}")
            if depth == 0:
                return s[i + 1:j], j + 1
        return None
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+|\\.", s[i:])
        return m.group(), i + m.end()
    return s[i], i + 1


def _expand_shorthand(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac \\pi4`` -> ``\\frac{\\pi}{4}``, ``\\sqrt2`` -> ``\\sqrt{2}``: TeX's
    brace-less arguments, which math-verify's parser misreads (``\\frac \\pi4`` came out as 2)."""
    out, i = [], 0
    for m in re.finditer(r"\\(?:[dt]?frac|sqrt)(?![A-Za-z])", s):
        if m.start() < i:
            continue
        out.append(s[i:m.start()])
        cmd, j = m.group().replace("dfrac", "frac").replace("tfrac", "frac"), m.end()
        nargs = 2 if cmd == "\\frac" else 1
        if cmd == "\\sqrt" and s[j:].lstrip().startswith("["):
            out.append(cmd)
            i = j
            continue
        args = []
        for _ in range(nargs):
            a = _latex_arg(s, j)
            if a is None:
                break
            args.append(a[0])
            j = a[1]
        if len(args) < nargs:
            out.append(cmd)
            i = m.end()
            continue
        out.append(cmd + "".join("{" + _expand_shorthand(a) + "}" for a in args))
        i = j
    out.append(s[i:])
    return "".join(out)


def clean_latex(answer: str) -> str:
    """Notation-only differences removed before any comparison: shorthand arguments, ``\\dfrac``,
    thousands separators (``29,\\!322`` and ``1{,}000``), percent signs (as Hendrycks' ``strip_string``)
    and a trailing ``.`` or ``,``."""
    s = _expand_shorthand(answer.strip())
    s = re.sub(r"(\d),\\!(?=\d{3})", r"\1", s)
    s = re.sub(r"(\d)\{,\}(?=\d{3})", r"\1", s)
    s = s.replace("\\%", "").replace("%", "")
    return s.strip().rstrip(".,").strip()


def normalize_math_answer(answer: str, keep_equation: bool = False) -> str:
    """Minerva's answer normalisation (units, ``\\text``, spaces, ``$``) after ``clean_latex``, with
    ``\\left``/``\\right`` dropped (Hendrycks' ``strip_string``). Minerva keeps the text after the last ``=``
    (``x = 5`` → ``5``); ``keep_equation`` keeps the whole equation."""
    s = clean_latex(answer)
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", "")):
        s = s.replace(a, b)
    if not keep_equation:
        s = s.split("=")[-1]
    for before, after in _MINERVA_SUBSTITUTIONS:
        s = s.replace(before, after)
    for expr in _MINERVA_REMOVED:
        s = s.replace(expr, "")
    s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", s)
    s = re.sub(r"(\\text\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", s)
    s = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", s)
    s = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", s)
    s = s.replace("$", "").rstrip(".")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s


def extract_math_answer(completion: str) -> str | None:
    """The model's final answer as LaTeX: the last ``\\boxed{}``/``\\fbox{}``, else the last ``#### X``,
    else "the answer is X"; None when there is none."""
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed.strip()
    for pattern in (_HASH_ANSWER, _ANSWER_IS_TEXT):
        found = pattern.findall(completion)
        if found:
            return found[-1].strip().rstrip(".").strip().strip("$").strip()
    return None


class GradeTimeout(BaseException):
    """Raised by the per-item timer; a BaseException so that sympy's ``except Exception`` cannot eat it."""


@contextmanager
def time_limit(seconds: float | None):
    """Interrupt the block after ``seconds`` (SIGALRM). A no-op where signals cannot be used: off the main
    thread, on Windows, or when ``seconds`` is None/0 — there long inputs are kept short instead."""
    usable = (seconds and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise GradeTimeout

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@lru_cache(maxsize=8192)
def _mv_parse(answer: str) -> tuple:
    """math-verify's parse of one boxed answer (cached: gold answers repeat for every sample)."""
    from math_verify import parse

    return tuple(parse("\\boxed{" + answer + "}", parsing_timeout=None))


def _numbers_close(a, b, rel: float = 1e-5) -> bool | None:
    """Whether two sympy numbers agree to ``rel`` relative (evaluated to 30 digits in sympy's own floats,
    which do not underflow like Python's); None when either is not a plain number."""
    try:
        if not (getattr(a, "is_number", False) and getattr(b, "is_number", False)):
            return None
        if getattr(a, "is_Relational", False) or getattr(b, "is_Relational", False):
            return None
        x, y = a.evalf(30), b.evalf(30)
        return bool(abs(x - y) <= rel * max(abs(x), abs(y)))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return None


def math_verify_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on the cleaned answers, or None when either side does not parse to a sympy
    object. A "yes" on two plain numbers must also hold to 1e-5 relative: math-verify rounds to 6
    decimals, which makes 1/2004! equal 1/2005!."""
    from math_verify import verify

    g, p = _mv_parse(clean_latex(gold)), _mv_parse(clean_latex(pred))
    if not g or not p or isinstance(g[0], str) or isinstance(p[0], str):
        return None
    if not verify(list(g), list(p), timeout_seconds=None):
        return False
    return _numbers_close(g[0], p[0]) is not False


_VARIABLE = re.compile(r"^\\?[A-Za-z]+(_\{?\w+\}?)?(\(\w\))?$")  # x, \\theta, a_1, x_{n}, f(x)


def _assigns(answer: str) -> bool:
    """Whether an answer with "=" is "variable = value" (``x = 5``, ``\\theta=\\pi``, ``f(x)=2x``)."""
    return bool(_VARIABLE.match(normalize_math_answer(answer, True).split("=")[0].replace("$", "")))


_BASE_NUMBER = re.compile(r"^\s*(-?[0-9A-Za-z.]+)\s*_\s*\{?\s*(\d+)\s*\}?\s*$")


def _base_number(s: str) -> tuple[str, int] | None:
    """``("52", 8)`` for ``52_8`` / ``52_{8}`` (MATH's numbers in other bases), else None."""
    m = _BASE_NUMBER.match(s.replace("\\text{", "{").replace("\\mathrm{", "{"))
    return (m.group(1).upper(), int(m.group(2))) if m else None


def math_answers_equal(pred: str | None, gold: str | None, timeout_s: float | None = 5.0) -> bool:
    """Whether a predicted MATH answer equals the gold one: numbers in another base digit by digit, else
    normalised strings, else math-verify under a ``timeout_s`` limit (a timeout counts as not equal)."""
    if pred is None or gold is None or not pred.strip():
        return False
    if pred.strip() == gold.strip():
        return True
    gb, pb = _base_number(clean_latex(gold)), _base_number(clean_latex(pred))
    if gb is not None:  # math-verify drops the subscript: 52_8 would equal 52_9
        return pb == gb or (pb is None and clean_latex(pred).upper() == gb[0])
    # Minerva keeps the text after the last "=", so "98765+x=5" met "x=5" and "0" met "5x-7y+4=0". Two equations
    # are compared whole; a bare value meets an equation only when that names one variable ("5" for "x=5").
    whole = "=" in pred and "=" in gold
    if not whole and not all(_assigns(a) for a in (pred, gold) if "=" in a):
        return False  # a value never equals an equation such as "98765+x=5"
    if normalize_math_answer(pred, whole) == normalize_math_answer(gold, whole):
        return True
    if max(len(pred), len(gold)) > MAX_SYMBOLIC_CHARS:
        return False
    try:
        with time_limit(timeout_s):
            return bool(math_verify_equal(pred, gold))
    except GradeTimeout:
        return False
    except Exception:  # a parser bug on odd LaTeX must not kill a grading run: not equal
        return False

