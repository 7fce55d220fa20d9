"""Score calibration: the isotonic fit by hand, its metadata round trip, and the outcomes of peaks."""

import numpy as np
import pytest

from nucleikit.infer.calibration import ScoreCalibration, fit_calibration, peak_outcomes


def test_fit_pools_adjacent_violators_by_hand():
    # rates 0, 1, 0, 1 by score: the middle pair violates order and pools to 0.5
    cal = fit_calibration([0.1, 0.2, 0.3, 0.4], [False, True, False, True])
    # knots at both ends of the pooled block: every observed score keeps its fitted value
    assert cal.map_values == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert cal.probabilities == pytest.approx((0.0, 0.5, 0.5, 1.0))
    np.testing.assert_allclose(cal([0.0, 0.1, 0.15, 0.25, 0.35, 0.4, 2.0]), [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-7)
    assert cal.n_peaks == 4


def test_equal_scores_are_one_observation_weighted_by_count():
    # score 0.5 is a hit 1 time in 4; score 0.9 always: 0.25 then 1, already monotone
    cal = fit_calibration([0.5, 0.5, 0.5, 0.5, 0.9], [True, False, False, False, True])
    assert cal.map_values == pytest.approx((0.5, 0.9))
    assert cal.probabilities == pytest.approx((0.25, 1.0))


def test_calibrated_scores_never_decrease_and_knots_are_capped():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 2000)
    hit = rng.uniform(0, 1, 2000) < s  # true rate = score
    cal = fit_calibration(s, hit, max_knots=16)
    assert len(cal.map_values) <= 16
    out = cal(np.linspace(0, 1, 101))
    assert np.all(np.diff(out) >= 0)
    assert cal(0.5) == pytest.approx(0.5, abs=0.1)


def test_a_constant_outcome_gives_a_flat_map():
    cal = fit_calibration([0.2, 0.3], [True, True])
    np.testing.assert_allclose(cal([0.0, 0.25, 9.0]), [1, 1, 1])


def test_meta_round_trip_and_bad_metadata():
    cal = fit_calibration([0.1, 0.2, 0.3, 0.4], [False, True, False, True], fitted_on="x")
    back = ScoreCalibration.from_meta(cal.to_meta())
    assert back == cal
    with pytest.raises(ValueError, match="increasing"):
        ScoreCalibration((0.2, 0.1), (0.1, 0.2))
    with pytest.raises(ValueError, match="non-decreasing"):
        ScoreCalibration((0.1, 0.2), (0.5, 0.2))
    with pytest.raises(ValueError, match="needs map_values"):
        ScoreCalibration.from_meta({"probabilities": [1]})
    with pytest.raises(ValueError, match="as many outcomes"):
        fit_calibration([0.1, 0.2], [True])


def test_peak_outcomes_match_one_to_one_within_each_images_radius():
    peaks = [(np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0]]), np.array([0.9, 0.4, 0.7])),
             (np.array([[5.0, 5.0]]), np.array([0.3]))]
    truths = [np.array([[0.5, 0.0]]), np.array([[8.0, 5.0]])]
    s, hit = peak_outcomes(peaks, truths, radius=[2.0, 4.0])
    np.testing.assert_allclose(s, [0.9, 0.4, 0.7, 0.3])
    # one of the two near peaks pairs with the single truth; the far one never; image 2 within 4 px
    assert hit.tolist().count(True) == 2 and not hit[2] and hit[3]


@pytest.mark.parametrize("name", ["micronet", "udnet", "micronet_he"])
def test_bundled_detectors_carry_a_monotone_calibration_fitted_on_validation(name):
    from nucleikit.models.weights import read_weights_meta, resolve_weights

    meta = read_weights_meta(resolve_weights(name))
    cal = ScoreCalibration.from_meta(meta["calibration"])
    assert "validation" in cal.fitted_on and cal.n_peaks > 1000
    # near the background a peak is almost never a nucleus; at the map's top almost always
    assert cal(cal.map_values[0]) < 0.1 and cal(cal.map_values[-1]) > 0.85


def test_fit_map_calibration_from_maps_by_hand():
    from nucleikit.infer.calibration import fit_map_calibration

    m = np.zeros((40, 40), np.float32)
    m[10, 10], m[30, 30], m[10, 30] = 1.0, 0.8, 0.2  # two nuclei and a faint false peak
    truth = np.array([[10.0, 10.0], [30.0, 30.0]])
    cal = fit_map_calibration([m, m], [truth, truth], 3.0, min_distance=3, lowest_xi=0.05)
    assert cal.n_peaks == 6
    np.testing.assert_allclose(cal([0.2, 0.8, 1.0]), [0.0, 1.0, 1.0])
    # peaks below lowest_xi * max are not seen
    assert fit_map_calibration([m], [truth], 3.0, min_distance=3, lowest_xi=0.5).n_peaks == 2


def test_the_cli_default_detector_is_the_bundled_pooled_he_detector():
    import argparse

    from nucleikit.cli.options import DEFAULT_DETECTOR, add_model_option
    from nucleikit.models.weights import read_weights_meta, resolve_weights

    p = argparse.ArgumentParser()
    add_model_option(p)
    assert p.parse_args([]).model == DEFAULT_DETECTOR == "micronet_he"
    meta = read_weights_meta(resolve_weights(DEFAULT_DETECTOR))
    assert meta["task"] == "detection" and meta["mpp"] == 0.5
    # validated on every pooled data set, each at its own radius; every test set scored
    assert set(meta["validation"]["f1_per_set"]) == {"crchisto", "breast", "kidney", "lung", "prostate"}
    assert {"crchisto", "breast", "kidney", "lung", "prostate", "f1_r6", "f1_r8"} <= set(meta["test"])
    assert meta["test"]["f1_r6"] == pytest.approx(meta["test"]["crchisto"]["f1"], abs=1e-9)  # same pairs
