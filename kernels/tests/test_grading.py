import pytest
from wmss_kernels.grading import extract_answer, grade, last_boxed, to_number


@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("<think>47 + 38 = 85</think> <answer>\\boxed{85}</answer>", "85", True),
        ("<think>47 + 38 = 85</think> <answer>\\boxed{84}</answer>", "85", False),
        ("so the answer is <answer>72</answer>", "72", True),
        ("The total is \\boxed{1,234} dollars.", "1234", True),
        ("\\boxed{\\frac{3}{4}}", "3/4", True),
        ("\\boxed{0.75}", "3/4", True),
        ("\\boxed{18.0}", "18", True),
        ("\\boxed{-7}", "-7", True),
        ("\\boxed{7}", "-7", False),
        ("first 3, then 5, finally 12", "12", True),  # last number
        ("first 12, then 5", "12", False),
        ("I do not know.", "12", False),  # nothing to extract
        ("", "5", False),
        ("\\boxed{\\sqrt{4}}", "2", True),  # only math-verify can evaluate this one
        ("\\boxed{3} then \\boxed{5}", "5", True),  # the last box wins
        ("The answer is (C).", "C", True),
        ("\\boxed{B}", "C", False),
        ("\\boxed{12}", "B", True),  # a value matching the gold choice's text
    ],
)
def test_grade(response, gold, correct):
    question = "Pick one: (A) 10 (B) 12 (C) 14"
    assert grade(response, gold, question)[0] is correct


def test_extraction_order():
    assert last_boxed("\\boxed{a} and \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{5} then \\boxed{cut off") == "5"
    assert extract_answer("<answer>x</answer> <answer>\\boxed{9}</answer>") == "9"
    assert extract_answer("<answer>a</answer> junk <answer> 7 </answer>") == "7"
    assert extract_answer("1,234 and then -5.5") == "-5.5"
    assert extract_answer("no digits") is None


def test_to_number():
    assert to_number("1,234") == 1234
    assert to_number("\\frac{3}{4}") == 0.75
    assert to_number("$5") == 5
    assert to_number("-2/4") == -0.5
    assert to_number("12%") == 12
    assert to_number("x+1") is None


# --- the paper protocol's grader: cases written from the original's rules (docs/evaluation.md) ---
from wmss_kernels.grading import paper_verify, question_options, stated_choice  # noqa: E402

AQUA_Q = "How much? Answer Choices: (A) 23.65 (B) 1000 (C) 35.62 (D) 2.65 (E) 1023.65"


@pytest.mark.parametrize(
    "response, gold, verified",
    [
        # boxed LaTeX, anywhere in the response (the think part included)
        ("<think>17 + 53 = 70</think> <answer>\\boxed{70}</answer>", "70", True),
        ("The final answer is $70$.", "70", True),
        # no LaTeX anchor: the paper's grader does not read bare numbers (the lenient one does)
        ("so the answer is 70", "70", False),
        # the last box counts, even when an earlier one (in the think part) is right
        ("<think>maybe \\boxed{5}</think><answer>\\boxed{3}</answer>", "5", False),
        ("<think>maybe \\boxed{3}</think><answer>\\boxed{5}</answer>", "5", True),
        # fractions and decimals are the same number
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{\\dfrac{14}{3}}", "\\frac{14}{3}", True),
        ("\\boxed{\\frac{11}{6}}", "1.8333333333333335", True),
        ("\\boxed{1.8333}", "1.8333333333333335", False),  # rounded to 6 places only
        # \text{} and units are normalised away
        ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
        ("\\boxed{5\\text{ cm}}", "5", True),
        ("\\boxed{5 \\text{ dollars}}", "5.0", True),
        ("\\boxed{\\$18}", "18", True),
        # thousands separators, and the numeric golds of gsm8k/svamp ("576.0")
        ("\\boxed{1,000}", "1000", True),
        ("\\boxed{1{,}000}", "1000.0", True),
        ("\\boxed{576}", "576.0", True),
        # an equation's right-hand side
        ("so \\boxed{x=5}", "5", True),
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        # a response with no answer
        ("I cannot solve this.", "12", False),
        ("", "12", False),
    ],
)
def test_paper_verify(response, gold, verified):
    assert paper_verify(response, gold) == (verified, None)


@pytest.mark.parametrize(
    "response, gold, verified",
    [
        ("\\boxed{C}", "C", True),
        ("\\boxed{ B }", "C", False),
        ("The answer is (D).", "D", True),
        ("so the answer is d", "D", True),  # any case
        ("\\boxed{D} but the answer is (A)", "D", True),  # a boxed letter comes first
        ("\\boxed{2.65}", "D", True),  # no letter: the boxed value is option D's text
        ("\\boxed{2.65}", "A", False),
        ("\\boxed{1000.0}", "B", True),  # compared by math-verify, not as strings
        ("\\boxed{7}", "A", False),  # matches no option: math-verify against "A"
        ("Compare A and B before deciding.", "A", False),  # letters in reasoning are not answers
    ],
)
def test_paper_verify_multiple_choice(response, gold, verified):
    assert paper_verify(response, gold, AQUA_Q) == (verified, None)


def test_choice_helpers():
    assert question_options(AQUA_Q) == {"A": "23.65", "B": "1000", "C": "35.62", "D": "2.65", "E": "1023.65"}
    assert question_options("no options here") == {}
    assert stated_choice("work... \\boxed{c}") == "C"
    assert stated_choice("The final answer is (D).") == "D"
    assert stated_choice("Compare A and B before deciding.") is None


def test_unparsable_gold_counts_as_incorrect_with_a_reason():
    verified, error = paper_verify("\\boxed{5}", "$")
    assert verified is None and "gold" in error
    # a gold math-verify reads only as a string still compares, and fails
    assert paper_verify("\\boxed{5}", "???") == (False, None)
