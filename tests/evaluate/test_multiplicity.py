"""Holm's adjustment against statsmodels' multipletests and a hand-computed example."""

import numpy as np
import pytest

from nsclc_engine.evaluate.multiplicity import comparisons_note, holm_adjust


def test_holm_by_hand_on_four_p_values():
    # sorted 0.01, 0.02, 0.03, 0.04 -> 4 * 0.01, 3 * 0.02, 2 * 0.03, 1 * 0.04, made monotone
    p = [0.03, 0.01, 0.04, 0.02]
    np.testing.assert_allclose(holm_adjust(p), [0.06, 0.04, 0.06, 0.06])


@pytest.mark.parametrize(
    "p",
    [
        [0.5],
        [0.001, 0.2, 0.04, 0.04, 0.9],
        [0.3, 0.3, 0.3],
        [0.0, 1.0, 0.6, 0.01],
        list(np.random.default_rng(3).uniform(0, 0.2, 12)),
    ],
)
def test_holm_equals_statsmodels(p):
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(holm_adjust(p), expected, rtol=0, atol=1e-12)


def test_a_comparison_not_made_stays_nan_and_does_not_count():
    adjusted = holm_adjust([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04])  # m = 2, not 3
    assert holm_adjust([]).shape == (0,)


def test_p_values_outside_0_1_are_refused():
    with pytest.raises(ValueError, match="outside"):
        holm_adjust([0.2, 1.5])


def test_the_note_says_how_many_comparisons():
    assert "3 DeLong tests" in comparisons_note(3, "DeLong tests")
    assert "Holm" in comparisons_note(3) and "no adjustment" in comparisons_note(1)
