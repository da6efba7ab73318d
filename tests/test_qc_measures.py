"""The quality measures equal CellProfiler's MeasureImageQuality values recorded by tools/qc_cellprofiler_fixture.py."""
import json
from pathlib import Path

import numpy as np
import pytest

from microscopy_toolkit.qc.measures import image_quality, focus_score

FX = Path(__file__).parent/'fixtures'
REF = json.loads((FX/'qc_cellprofiler.json').read_text())
IMGS = np.load(FX/'qc_cellprofiler_images.npz')


@pytest.mark.parametrize('name', sorted(REF['values']))
def test_equal_to_cellprofiler(name):
    got = image_quality(IMGS[name], REF['scales'])
    for k, want in REF['values'][name].items():
        assert got[k] == pytest.approx(want, rel=1e-9, abs=1e-12), (name, k, got[k], want)


def test_fixture_covers_every_cellprofiler_measure_and_field_kind():
    "The fixture is not trivially passing: it holds every measure, at three scales, on fields that differ."
    vals = REF['values']
    keys = set(vals['sharp_u16'])
    for s in (2, 5, 20):
        assert {f'LocalFocusScore_{s}', f'Correlation_{s}'} <= keys
    assert {'FocusScore', 'PowerLogLogSlope', 'PercentMaximal', 'ThresholdOtsu', 'MADIntensity'} <= keys
    assert vals['blurred_u16']['FocusScore'] < vals['sharp_u16']['FocusScore']
    assert vals['saturated_u16']['PercentMaximal'] > 1 > vals['sharp_u16']['PercentMaximal']
    assert {'real_cell_u8', 'real_ihc_u8'} <= set(vals)


def test_scaling_matters_as_in_cellprofiler():
    "The same pixels as uint16 and as float give the FocusScore of the scaled data (the check can fail)."
    img = IMGS['sharp_u16']
    assert focus_score(img) == pytest.approx(focus_score(img / 65535.0), rel=1e-12)
    assert focus_score(img) != pytest.approx(focus_score(img.astype(float)), rel=1e-3)
