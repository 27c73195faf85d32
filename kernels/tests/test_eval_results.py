from math import comb

import pytest
from wmss_kernels.eval_results import metrics_of, reported_ks, unbiased_pass_at_k


@pytest.mark.parametrize(
    "n, c, k",
    [
        (1, 0, 1),
        (1, 1, 1),
        (8, 0, 4),
        (8, 3, 1),
        (8, 3, 2),
        (8, 3, 5),
        (8, 3, 6),
        (8, 8, 8),
        (16, 5, 4),
        (64, 1, 8),
        (200, 7, 50),
    ],
)
def test_unbiased_pass_at_k_is_one_minus_the_chance_k_draws_all_miss(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert unbiased_pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_special_cases():
    assert unbiased_pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # k = 1: the mean accuracy
    assert unbiased_pass_at_k(8, 3, 8) == 1.0  # k = n: observed pass@n
    assert unbiased_pass_at_k(8, 0, 8) == 0.0
    assert unbiased_pass_at_k(4, 2, 3) == 1.0  # fewer misses than draws
    with pytest.raises(ValueError):
        unbiased_pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        unbiased_pass_at_k(4, 1, 5)


def test_reported_ks():
    assert reported_ks(1) == [1]
    assert reported_ks(8) == [1, 2, 4, 8]
    assert reported_ks(10) == [1, 2, 4, 8, 10]


def _rows(correct_by_prompt):
    return [
        {
            "position": p,
            "sample_index": k,
            "correct": c,
            "truncated": k == 0,
            "grader_error": None,
            "output_tokens": 10 + k,
        }
        for p, cs in enumerate(correct_by_prompt)
        for k, c in enumerate(cs)
    ]


def test_metrics_of_sampled_generations():
    m = metrics_of(_rows([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]), 4)
    assert m["mean_at_4"] == m["acc"] == pytest.approx(5 / 12)
    assert m["pass_at_4"] == m["observed_pass_at_k"] == pytest.approx(2 / 3)
    assert m["pass_at_1"] is None and m["first_sample_accuracy"] == pytest.approx(2 / 3)
    assert m["unbiased_pass_at_k"]["1"] == pytest.approx(5 / 12)
    assert m["unbiased_pass_at_k"]["2"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["truncated_generations"] == 3 and m["truncation_rate"] == pytest.approx(0.25)
    assert m["mean_output_tokens"] == pytest.approx(11.5)


def test_metrics_of_greedy_and_missing_samples():
    m = metrics_of(_rows([[1], [0], [1], [1]]), 1)
    assert m["pass_at_1"] == m["unbiased_pass_at_k"]["1"] == 0.75
    rows = _rows([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="sample indices"):
        metrics_of(rows[:-1], 2)
