"""The Frechet distance behind FVD against the closed form for Gaussians."""

import numpy as np
import pytest

from gw_jax.video_metrics import frechet_distance, frechet_feature_distance, gaussian_stats


def _rotation(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_one_dimension_is_mean_and_std_gap():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance(np.array([1.5]), np.array([[4.0]]), np.array([-0.5]), np.array([[0.25]]))
    assert got == pytest.approx(2.0 ** 2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_shared_eigenvectors_match_the_closed_form():
    # covariances Q diag(a) Q^T and Q diag(b) Q^T commute: tr(...) = sum (sqrt(a) - sqrt(b))^2
    rng = np.random.default_rng(0)
    q = _rotation(rng, 7)
    a, b = rng.uniform(0.1, 3.0, 7), rng.uniform(0.1, 3.0, 7)
    mean_a, mean_b = rng.normal(size=7), rng.normal(size=7)
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mean_a, (q * a) @ q.T, mean_b, (q * b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_general_covariances_match_trace_of_the_product_root_and_are_symmetric():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = x @ x.T + 0.1 * np.eye(5), y @ y.T + 0.1 * np.eye(5)  # do not commute
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    cross = np.real(np.trace(scipy_linalg.sqrtm(cov_a @ cov_b)))
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean_b, cov_b, mean_a, cov_a) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0.0, abs=1e-9)


def test_feature_estimate_converges_to_the_gaussians_distance():
    rng = np.random.default_rng(2)
    q = _rotation(rng, 4)
    a, b = np.array([1.0, 2.0, 0.5, 0.1]), np.array([0.3, 2.0, 1.5, 0.1])
    mean_b = np.array([0.5, 0.0, -0.5, 0.0])
    expected = np.sum(mean_b ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    n = 200_000
    features_a = (rng.normal(size=(n, 4)) * np.sqrt(a)) @ q.T
    features_b = (rng.normal(size=(n, 4)) * np.sqrt(b)) @ q.T + mean_b
    assert frechet_feature_distance(features_a, features_b) == pytest.approx(expected, rel=0.02)
    mean, cov = gaussian_stats(features_a)
    np.testing.assert_allclose(cov, (q * a) @ q.T, atol=0.02)


def test_rank_deficient_estimates_stay_finite_and_real():
    rng = np.random.default_rng(3)
    few = rng.normal(size=(4, 10))  # fewer samples than dimensions: singular covariance
    d = frechet_feature_distance(few, few + 1.0)
    assert np.isfinite(d) and d == pytest.approx(10.0, rel=1e-6)  # a pure shift by 1 in 10 dims
