"""Answer grading for evaluate: the two protocols of docs/method.md#evaluation-step-7 (settings in
docs/evaluation.md#protocols).

paper_verify: the original's grader, rule for rule. math-verify on the whole response (the think
part included) with its LaTeX settings; a gold letter A-E is graded by the letter the response
states, else by matching its last boxed value against the options in the question.

grade (lenient): correct if math-verify says so (LaTeX extraction with \\boxed first, then plain
expressions) OR if the extracted answer equals the gold numerically. More accepting than the
paper's grader, so its accuracies do not compare with the paper's tables.
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
                    return text[i + 1 : j].strip()
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
            from math_verify import ExprExtractionConfig, LatexExtractionConfig, LatexNormalizationConfig, parse, verify

            latex = LatexExtractionConfig(
                boxed_match_priority=0,
                try_extract_without_anchor=False,
                normalization_config=LatexNormalizationConfig(
                    basic_latex=True, units=True, malformed_operators=False, nits=False, boxed="all"
                ),
            )
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


# --- the paper protocol's grader (docs/evaluation.md, "Grading") ---------------------------------
# A letter answer: the last \boxed{X}, else the last "answer is X" / "answer: (X)" (any case).
_BOXED_LETTER = re.compile(r"\\boxed\{\s*([A-E])\s*\}", re.I)
_STATED_LETTER = re.compile(r"answer\s*(?:is|:)?\s*\(?([A-E])\)?\b", re.I)
# "(A) 12 (B) 14 ..." in the question: option letter -> its text (up to the next "(" option)
_OPTION = re.compile(r"\(([A-E])\)\s*([^(]+?)(?=\s*\([A-E]\)|\s*$)")
# \boxed{...} with at most one level of nested braces (the original's reach)
_BOXED_SHALLOW = re.compile(r"\\boxed\{([^{}]+(?:\{[^{}]*\}[^{}]*)*)\}")

_paper_mv = None  # (parse, verify, prediction extraction config) once imported


class _DropDeprecationNotice(logging.Filter):
    """latex2sympy2_extended 1.11 logs a warning on every parse with equations=True (still applied,
    only announced as deprecated): thousands of identical lines per set."""

    def filter(self, record):
        return "equations=True" not in record.getMessage()


def _paper_math_verify():
    global _paper_mv
    if _paper_mv is None:
        logging.getLogger("latex2sympy2_extended.math_normalization").addFilter(_DropDeprecationNotice())
        from math_verify import LatexExtractionConfig, LatexNormalizationConfig, parse, verify

        latex = LatexExtractionConfig(
            normalization_config=LatexNormalizationConfig(
                basic_latex=True, units=True, malformed_operators=False, nits=False, boxed="all", equations=True
            ),
            boxed_match_priority=0,
            try_extract_without_anchor=False,
        )
        _paper_mv = (parse, verify, [latex])
    return _paper_mv


def paper_math_verify(prediction: str, gold: str):
    """True/False from math-verify, or None when the gold answer does not parse.

    Gold: `$gold$` parsed with the library's default targets, first match. Prediction: the whole
    text with the LaTeX target only; the original asks for extraction_mode "all", which math-verify
    (0.8 and 0.9) treats as "any_match" (it only tests for "first_match"), so that is passed."""
    parse, verify, prediction_config = _paper_math_verify()
    gold_parsed = parse(f"${gold.strip().strip('$')}$", extraction_mode="first_match")
    if not gold_parsed:
        return None
    predicted = parse(prediction, extraction_config=prediction_config, extraction_mode="any_match")
    return bool(verify(gold_parsed, predicted))


def stated_choice(response: str):
    """The option letter a response states, or None."""
    for pattern in (_BOXED_LETTER, _STATED_LETTER):
        found = pattern.findall(response)
        if found:
            return found[-1].upper()
    return None


def question_options(question: str) -> dict:
    return {letter: text.strip().rstrip(".") for letter, text in _OPTION.findall(question)}


def _choice_by_value(response: str, question: str, gold_letter: str):
    """Whether the option whose text equals the last boxed value is the gold one; None if no
    option matches (or the question lists none, or nothing is boxed)."""
    options = question_options(question)
    boxed = _BOXED_SHALLOW.findall(response)
    if not options or not boxed:
        return None
    value = boxed[-1].strip()
    for letter, text in options.items():
        try:
            same = paper_math_verify(f"\\boxed{{{value}}}", text)
        except Exception:  # noqa: BLE001 - as the original: fall back to plain equality
            same = value == text
        if same:
            return letter == gold_letter
    return None


def paper_verify(response: str, gold: str, question: str = ""):
    """(verified, grader_error) for one generation under the paper protocol.

    verified is True, False or None; None (the gold did not parse, or math-verify raised) counts
    as incorrect. grader_error says why verified is None."""
    letter = gold.strip().strip("$").upper()
    if len(letter) == 1 and letter in "ABCDE":
        stated = stated_choice(response)
        if stated is not None:
            return stated == letter, None
        matched = _choice_by_value(response, question, letter)
        if matched is not None:
            return matched, None
    try:
        verified = paper_math_verify(response, gold)
    except Exception as e:  # noqa: BLE001 - a grader failure is an incorrect answer, recorded
        log.debug("math-verify failed on %r", response[-200:], exc_info=True)
        return None, f"{type(e).__name__}: {e}"[:500]
    return verified, (None if verified is not None else "gold answer not parsed by math-verify")
