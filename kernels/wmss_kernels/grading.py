"""Answer extraction and grading for evaluate (WMSS-SPEC §12.1, simplified where noted).

A prediction is correct if math-verify says so (LaTeX extraction with \\boxed first, then plain
expressions) OR if the extracted answer equals the gold numerically. The numeric path keeps the
grader working (and predictable) when math-verify is missing or cannot parse something.
"""

import logging
import re
from fractions import Fraction

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_LETTER_PATTERNS = [
    re.compile(r"answer\s*(?:is|:)\s*\(?([A-E])\)?(?![A-Za-z])", re.I),
]
_CHOICE = re.compile(r"\(([A-E])\)\s*([^()]*?)(?=\s*\([A-E]\)|$)", re.S)


def last_boxed(text: str):
    """Content of the last \\boxed{...} (nested braces balanced), or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1:j].strip()
        # unbalanced (e.g. cut off by max_new_tokens): try an earlier one
        start = text.rfind("\\boxed{", 0, start)
    return None


def extract_answer(response: str):
    """Last \\boxed{}, else the last <answer>…</answer>, else the last number; None if nothing."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    tags = _ANSWER_TAG.findall(response)
    if tags:
        return tags[-1].strip()
    numbers = _NUMBER.findall(response)
    return numbers[-1] if numbers else None


def to_number(text):
    """A float for '1,234', '-3', '18.0', '3/4', '\\frac{3}{4}', '$5', '12%'; None otherwise."""
    if text is None:
        return None
    s = str(text).strip().strip("$").strip()
    s = re.sub(r"\\text\{[^}]*\}", "", s)
    s = s.replace(",", "").replace("\\!", "").replace("\\%", "").rstrip("%").rstrip(".").strip()
    s = re.sub(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", r"(\1)/(\2)", s)
    m = re.fullmatch(r"\(?(-?[\d.]+)\)?(?:/\(?(-?[\d.]+)\)?)?", s.replace(" ", ""))
    if not m:
        return None
    try:
        value = Fraction(m.group(1))
        if m.group(2) is not None:
            value /= Fraction(m.group(2))
    except (ValueError, ZeroDivisionError):
        return None
    return float(value)


def numeric_equal(pred, gold) -> bool:
    a, b = to_number(pred), to_number(gold)
    return a is not None and b is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


_mv = None  # (parse, verify, pred_config) once loaded; False if math-verify is unavailable


def _math_verify():
    global _mv
    if _mv is None:
        try:
            from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
            from math_verify import LatexNormalizationConfig
            latex = LatexExtractionConfig(
                boxed_match_priority=0, try_extract_without_anchor=False,
                normalization_config=LatexNormalizationConfig(
                    basic_latex=True, units=True, malformed_operators=False, nits=False,
                    boxed="all"))
            _mv = (parse, verify, [latex, ExprExtractionConfig()])
        except ImportError:
            log.warning("math-verify is not installed: grading by numeric comparison only")
            _mv = False
    return _mv


def math_verify_equal(response: str, gold: str) -> bool:
    mv = _math_verify()
    if not mv:
        return False
    parse, verify, pred_config = mv
    try:
        gold_parsed = parse(f"${gold}$")
        pred_parsed = parse(response, extraction_config=pred_config)
        return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed))
    except Exception:  # noqa: BLE001 - as in the original, a grader error counts as incorrect
        log.debug("math-verify failed on %r", response[-200:], exc_info=True)
        return False


def _letter(response: str):
    boxed = last_boxed(response)
    if boxed is not None:
        m = re.fullmatch(r"\(?([A-E])\)?(?:[.:)].*)?", boxed.replace("\\text{", "").replace("}", "").strip())
        if m:
            return m.group(1)
    for pattern in _LETTER_PATTERNS:
        found = pattern.findall(response)
        if found:
            return found[-1].upper()
    return None


def grade(response: str, gold: str, question: str = ""):
    """(correct, extracted) for one response."""
    gold = str(gold).strip()
    if re.fullmatch(r"[A-E]", gold):
        # multiple choice (AQuA): a letter answer, or a value that matches the gold choice's text
        letter = _letter(response)
        if letter is not None:
            return letter == gold, letter
        value = extract_answer(response)
        choices = dict((k, v.strip()) for k, v in _CHOICE.findall(question or ""))
        for key, text in choices.items():
            if value is not None and (numeric_equal(value, text) or value == text):
                return key == gold, key
        return False, value
    extracted = extract_answer(response)
    if extracted is not None and numeric_equal(extracted, gold):
        return True, extracted
    return math_verify_equal(response, gold), extracted
