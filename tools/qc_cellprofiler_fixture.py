"""Record CellProfiler's MeasureImageQuality values on a few images, as a fixture for tests/test_qc_measures.py.

Run OUTSIDE the project's environment, in a scratch venv with CellProfiler's numerical backend (NumPy < 2):

    python3 -m venv /tmp/cp && /tmp/cp/bin/pip install centrosome 'numpy<2'
    /tmp/cp/bin/python tools/qc_cellprofiler_fixture.py tests/fixtures

`cellprofiler-library` is not on this machine's package index (and holds no image-quality code: MeasureImageQuality
lives in CellProfiler's frontend, `src/frontend/cellprofiler/modules/measureimagequality.py`, commit 5b9c361f, whose
`cellprofiler-core` needs Java). The module's numerical work is centrosome's: `haralick.Haralick(...).H3()` for
Correlation, `radial_power_spectrum.rps` for PowerLogLogSlope, `threshold.get_threshold(TM_OTSU, TM_GLOBAL, ...)` for
the Otsu threshold; those are called here as the module calls them. The module's few lines of NumPy around them
(FocusScore, LocalFocusScore's grid, the log-log fit, saturation and intensity statistics) are followed step by step
from that file, with CellProfiler's default settings (two-class Otsu, weighted variance), on pixel data scaled as
CellProfiler loads it (integers divided by their type's maximum).
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.ndimage as ndi
import centrosome.haralick
import centrosome.radial_power_spectrum
import centrosome.threshold

SCALES = (2, 5, 20)


def images() -> dict:
    "Synthetic fields (sharp, blurred, saturated, empty, constant, float) and two real ones shipped with scikit-image."
    import skimage.data
    from skimage.io import imread

    rng = np.random.default_rng(18)
    yy, xx = np.mgrid[:90, :110]
    field = np.zeros((90, 110))
    for cy, cx, r in zip(rng.uniform(5, 85, 25), rng.uniform(5, 105, 25), rng.uniform(2, 6, 25)):
        field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    sharp = 500 + 20000 * field + rng.normal(0, 150, field.shape)
    blurred = ndi.gaussian_filter(sharp, 3)
    out = {
        'sharp_u16': np.clip(sharp, 0, 65535).astype(np.uint16),
        'blurred_u16': np.clip(blurred, 0, 65535).astype(np.uint16),
        'saturated_u16': np.clip(sharp * 4, 0, 65535).astype(np.uint16),
        'empty_u16': np.clip(300 + rng.normal(0, 20, field.shape), 0, 65535).astype(np.uint16),
        'constant_u16': np.full((40, 50), 1000, np.uint16),
        'float_f64': np.clip(field / field.max() + rng.normal(0, 0.02, field.shape), 0, 1),
    }
    root = Path(skimage.data.__file__).parent
    out['real_cell_u8'] = imread(root / 'cell.png')[100:228, 150:310].astype(np.uint8)
    out['real_ihc_u8'] = imread(root / 'ihc.png')[200:300, 300:420, 2].astype(np.uint8)
    return out


def pixel_data(img: np.ndarray) -> np.ndarray:
    "Pixel data as CellProfiler holds it: integers divided by their type's maximum, floats as they are."
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float64) / np.iinfo(img.dtype).max
    return img.astype(np.float64)


def focus_scores(px: np.ndarray, scale: int) -> tuple:
    "FocusScore and LocalFocusScore as calculate_focus_scores does (no mask)."
    mean = np.mean(px)
    focus = np.sum((px - mean) ** 2) / (np.prod(px.shape) * mean) if mean > 0 else 0
    i, j = np.mgrid[0:px.shape[0], 0:px.shape[1]].astype(float)
    m, n = (np.array(px.shape) + scale - 1) // scale
    grid = (i * float(m) / float(px.shape[0])).astype(int) * n + (j * float(n) / float(px.shape[1])).astype(int) + 1
    grid_range = np.arange(0, m * n + 1, dtype=np.int32)
    local_means = np.array(ndi.mean(px, grid, grid_range))
    sq = (px - local_means[grid]) ** 2
    grid_mask = (local_means != 0) & ~np.isnan(local_means)
    nz = grid_range[grid_mask]
    if len(nz) and nz[0] == 0:
        nz, local_means, grid_mask = nz[1:], local_means[1:], grid_mask[1:]
    local = 0
    if len(nz):
        sums = np.array(ndi.sum(sq, grid, nz))
        counts = np.array(ndi.sum(np.ones(px.shape), grid, nz))
        lnv = sums / (counts * local_means[grid_mask])
        med = np.median(lnv)
        if np.isfinite(med) and med > 0:
            local = np.var(lnv) / med
    return float(focus), float(local)


def correlation(px: np.ndarray, scale: int) -> float:
    value = centrosome.haralick.Haralick(px, np.ones(px.shape, int), 0, scale).H3()
    return 0.0 if len(value) != 1 or not np.isfinite(value[0]) else float(value[0])


def power_slope(px: np.ndarray) -> float:
    radii, magnitude, power = centrosome.radial_power_spectrum.rps(px)
    if sum(magnitude) > 0 and len(np.unique(px)) > 1:
        valid = np.asarray(magnitude) > 0
        radii = np.asarray(radii)[valid].reshape((-1, 1))
        power = np.asarray(power)[valid].reshape((-1, 1))
        if radii.shape[0] > 1:
            idx = np.isfinite(np.log(power))
            a = np.hstack((np.log(radii)[idx][:, None], np.ones(radii.shape)[idx][:, None]))
            return float(scipy.linalg.lstsq(a, np.log(power)[idx][:, None])[0][0][0])
    return 0.0


def measures(img: np.ndarray) -> dict:
    px = pixel_data(img)
    out = {}
    for s in SCALES:
        out['FocusScore'], out[f'LocalFocusScore_{s}'] = focus_scores(px, s)
        out[f'Correlation_{s}'] = correlation(px, s)
    out['PowerLogLogSlope'] = power_slope(px)
    n = px.size
    out['PercentMaximal'] = 100.0 * float(np.sum(px == px.max())) / n
    out['PercentMinimal'] = 100.0 * float(np.sum(px == px.min())) / n
    med = np.median(px)
    out.update(TotalArea=n, TotalIntensity=float(np.sum(px)), MeanIntensity=float(np.sum(px) / n),
               MedianIntensity=float(med), StdIntensity=float(np.std(px)),
               MADIntensity=float(np.median(np.abs(px - med))), MinIntensity=float(px.min()),
               MaxIntensity=float(px.max()))
    _, thr = centrosome.threshold.get_threshold(
        centrosome.threshold.TM_OTSU, centrosome.threshold.TM_GLOBAL, px.astype(np.float32),
        object_fraction=0.1, two_class_otsu=True, use_weighted_variance=True, assign_middle_to_foreground=True)
    out['ThresholdOtsu'] = float(thr)
    return out


def main(out_dir: str = 'tests/fixtures'):
    out = Path(out_dir)
    imgs = images()
    np.savez_compressed(out / 'qc_cellprofiler_images.npz', **imgs)
    import centrosome
    from importlib.metadata import version
    rec = {'source': 'CellProfiler MeasureImageQuality (commit 5b9c361f) on centrosome ' + version('centrosome')
                     + ', numpy ' + np.__version__, 'scales': list(SCALES),
           'values': {k: measures(v) for k, v in imgs.items()}}
    (out / 'qc_cellprofiler.json').write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec['values']['sharp_u16'], indent=1))


if __name__ == '__main__':
    main(*sys.argv[1:])
