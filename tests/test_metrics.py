import itertools

import numpy as np
import pytest

from nsclc_engine.metrics import harrell_c_index


def brute_force_c_index(time, event, risk):
    concordant = comparable = 0.0
    for i, j in itertools.permutations(range(len(time)), 2):
        if event[i] and time[i] < time[j]:
            comparable += 1
            concordant += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return concordant / comparable


def test_hand_computed_four_patients():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 0, 1, 0])
    risk = np.array([4.0, 1.0, 2.0, 3.0])
    # comparable pairs: (0,1) (0,2) (0,3) (2,3); concordant: (0,1) (0,2) (0,3); (2,3) discordant
    assert harrell_c_index(time, event, risk) == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, 40).astype(float)  # tied times
    event = rng.random(40) < 0.7
    risk = rng.integers(0, 5, 40).astype(float)  # tied risks
    assert harrell_c_index(time, event, risk) == pytest.approx(
        brute_force_c_index(time, event, risk)
    )


def test_perfect_and_reversed_risk():
    time = np.arange(1.0, 11.0)
    event = np.ones(10)
    assert harrell_c_index(time, event, -time) == 1.0
    assert harrell_c_index(time, event, time) == 0.0


def test_all_censored_raises():
    with pytest.raises(ValueError, match="no comparable pair"):
        harrell_c_index(np.arange(3.0), np.zeros(3), np.arange(3.0))
