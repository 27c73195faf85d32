import pytest

from wmss_kernels.grading import extract_answer, grade, last_boxed, to_number


@pytest.mark.parametrize("response, gold, correct", [
    ("<think>47 + 38 = 85</think> <answer>\\boxed{85}</answer>", "85", True),
    ("<think>47 + 38 = 85</think> <answer>\\boxed{84}</answer>", "85", False),
    ("so the answer is <answer>72</answer>", "72", True),
    ("The total is \\boxed{1,234} dollars.", "1234", True),
    ("\\boxed{\\frac{3}{4}}", "3/4", True),
    ("\\boxed{0.75}", "3/4", True),
    ("\\boxed{18.0}", "18", True),
    ("\\boxed{-7}", "-7", True),
    ("\\boxed{7}", "-7", False),
    ("first 3, then 5, finally 12", "12", True),   # last number
    ("first 12, then 5", "12", False),
    ("I do not know.", "12", False),                # nothing to extract
    ("", "5", False),
    ("\\boxed{\\sqrt{4}}", "2", True),           # only math-verify can evaluate this one
    ("\\boxed{3} then \\boxed{5}", "5", True),     # the last box wins
    ("The answer is (C).", "C", True),
    ("\\boxed{B}", "C", False),
    ("\\boxed{12}", "B", True),                     # a value matching the gold choice's text
])
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
