"Property-based checks (hypothesis) of the focus measures and metrics: invariances that must hold for any image."
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from microscopy_toolkit.focus.sharpness import spatial_frequency, brenner, tenengrad, variance_of_laplacian
from microscopy_toolkit.metrics import srcc, plcc, bootstrap_ci, average_precision

images = arrays(np.float64, st.tuples(st.integers(3, 24), st.integers(3, 24)),
                elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(images, st.floats(-1e3, 1e3), st.floats(0.1, 10))
def test_sf_offset_invariant_and_scale_equivariant(img, offset, scale):
    sf = spatial_frequency(img)
    assert np.isclose(spatial_frequency(img + offset), sf, rtol=1e-6, atol=1e-6)
    assert np.isclose(spatial_frequency(scale * img), scale * sf, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(images)
def test_transpose_swaps_row_and_column_frequency(img):
    sf, rf, cf = spatial_frequency(img, return_components=True)
    sf_t, rf_t, cf_t = spatial_frequency(img.T.copy(), return_components=True)
    assert np.isclose(rf, cf_t, atol=1e-9, rtol=1e-9) and np.isclose(cf, rf_t, atol=1e-9, rtol=1e-9) and np.isclose(sf, sf_t, atol=1e-9, rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(images)
def test_gradient_measures_are_zero_exactly_on_constant_images_and_nonnegative(img):
    for f in (spatial_frequency, brenner, tenengrad, variance_of_laplacian):
        assert f(img) >= 0
        assert f(np.full_like(img, img.flat[0])) == 0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(3, 40), elements=st.integers(-100, 100).map(float)), st.data())   # integers: exp() keeps them distinct
def test_srcc_invariant_to_monotone_transforms(x, data):
    y = data.draw(arrays(np.float64, len(x), elements=st.floats(-100, 100)))
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2: return
    assert np.isclose(srcc(x, y), srcc(np.exp(x / 50), y), atol=1e-9)
    assert np.isclose(plcc(x, y), plcc(3 * x + 1, y), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(5, 60), elements=st.floats(0, 1)))
def test_bootstrap_interval_brackets_mean_for_percentile(x):
    r = bootstrap_ci(x, n_resamples=500, method='percentile', seed=0)
    assert r.low <= r.high and r.low - 1e-12 <= x.max() and r.high + 1e-12 >= x.min()


@settings(max_examples=30, deadline=None)
@given(arrays(np.int64, (12, 12), elements=st.integers(0, 5)), st.permutations(range(1, 6)))
def test_ap_ignores_label_values(labels, perm):
    lut = np.array([0, *perm])
    ap, *_ = average_precision(labels, lut[labels])
    assert np.allclose(ap, 1.0)
