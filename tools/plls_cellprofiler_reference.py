"""Record the CellProfiler / centrosome power log-log slope on seeded images, as a fixture for nbs/10_focus.sharpness.

Run outside the repository's environment and CI, with centrosome's module file at hand (the wheel from PyPI:
`pip download --no-deps --only-binary :all: centrosome` and unzip it):

    python tools/plls_cellprofiler_reference.py /path/to/centrosome/radial_power_spectrum.py

It imports centrosome's `rps` as published (NumPy 2 lacks `ndarray.ptp`, so the images are passed as a subclass that
has it), takes the least-squares slope of log ring power on log radius over the rings with non-zero magnitude, as
CellProfiler's MeasureImageQuality does, and writes tests/fixtures/focus_plls_cellprofiler.json.
"""
import importlib.util, json, sys
from pathlib import Path

import numpy as np
from scipy import ndimage


class _WithPtp(np.ndarray):
    def ptp(self, *a, **k):
        return np.ptp(np.asarray(self), *a, **k)


def images():
    "The seeded inputs the fixture is about (the test rebuilds them the same way)."
    rng = np.random.default_rng(0)
    base = rng.random((3, 64, 80))
    out = [base[0], ndimage.gaussian_filter(base[1], 1.5), ndimage.gaussian_filter(base[2], 3.0) * 1000]
    return np.stack(out), [f'image {i}' for i in range(3)]


def main(rps_file: str):
    spec = importlib.util.spec_from_file_location('rps_module', rps_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ims, names = images()
    rows = []
    for im, name in zip(ims, names):
        radii, mag, power = mod.rps(im.view(_WithPtp))
        valid = np.asarray(mag) > 0
        r, p = np.log(np.asarray(radii)[valid]), np.log(np.asarray(power)[valid])
        slope = np.linalg.lstsq(np.stack([r, np.ones_like(r)], 1), p, rcond=None)[0][0]
        rows.append(dict(name=name, radii=np.asarray(radii).tolist(), power=np.asarray(power).tolist(), slope=slope))
    out = Path(__file__).resolve().parents[1] / 'tests' / 'fixtures' / 'focus_plls_cellprofiler.json'
    note = 'centrosome 1.3.4 rps + least-squares slope (CellProfiler MeasureImageQuality PowerLogLogSlope)'
    out.write_text(json.dumps({'source': note, 'images': rows}, indent=1) + '\n')
    print(out, [round(r['slope'], 6) for r in rows])


if __name__ == '__main__':
    main(sys.argv[1])
