"""mtk qc's engine: a 2-worker LocalCluster gives exactly the serial results; corrupt files and re-runs."""
import os
import time

import pandas as pd
import pytest

from microscopy_toolkit.qc.plate import plate_layout, write_synthetic_plate
from microscopy_toolkit.qc.run import measure_plate, run_qc


def _sorted(df):
    return df.sort_values(['path', 'channel', 'z']).reset_index(drop=True)


@pytest.fixture(scope='module')
def plate(tmp_path_factory):
    d = tmp_path_factory.mktemp('plate')
    write_synthetic_plate(d, rows=2, cols=3, channels=2, seed=7,
                          fault_rate={'defocus': 0.2, 'saturation': 0.1, 'empty': 0.1})
    (d/'Synth_B04_s1_w1.tif').write_bytes(b'II*\x00 corrupt')
    return d


def test_local_cluster_equals_serial(plate, tmp_path):
    "With a trained focus model's levels too: each worker process loads the checkpoint from its path."
    from microscopy_toolkit.focus import build_model, save_focus_model
    ckpt = save_focus_model(build_model('fluoclip', ['w1', 'w2'], 4, backbone='tiny:0', seed=1), tmp_path/'m.pt')
    lay = plate_layout(plate)
    serial = measure_plate(lay, tmp_path/'serial', scheduler='sync', show_progress=False, focus_model=ckpt)
    cluster = measure_plate(lay, tmp_path/'cluster', workers=2, batch=5, show_progress=False, focus_model=ckpt)
    assert len(serial) == 13 and (serial.status == 'failed').sum() == 1
    assert serial.FocusLevelExpected.notna().sum() == 12 and serial.FocusLevelExpected.nunique() > 1
    pd.testing.assert_frame_equal(_sorted(serial), _sorted(cluster), check_exact=True)


def test_rerun_skips_done_and_remeasures_changed(plate, tmp_path):
    out = tmp_path/'out'
    df, _ = run_qc(plate, out, show_progress=False)
    parts = sorted((out/'parts').glob('*.parquet'))
    again, _ = run_qc(plate, out, show_progress=False)
    # only the failed file is tried again: one new part with one row
    new = sorted(set((out/'parts').glob('*.parquet')) - set(parts))
    assert len(new) == 1 and len(pd.read_parquet(new[0])) == 1
    pd.testing.assert_frame_equal(_sorted(df), _sorted(again))
    f = plate/'Synth_A01_s1_w1.tif'
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    third, _ = run_qc(plate, out, show_progress=False)
    newest = sorted(set((out/'parts').glob('*.parquet')) - set(parts) - set(new))
    assert set(pd.read_parquet(newest[0]).path) == {str(f), str(plate/'Synth_B04_s1_w1.tif')}
    assert len(third) == len(df)


def test_failed_row_has_its_reason(plate, tmp_path):
    df, paths = run_qc(plate, tmp_path/'o', show_progress=False)
    bad = df[df.status == 'failed']
    assert bad.well.tolist() == ['B04'] and 'InputError' in bad.error.iloc[0]
    assert 'Synth_B04_s1_w1.tif' in bad.error.iloc[0]
    assert paths['parquet'].exists() and paths['csv'].exists()


def test_ome_zarr_plate_end_to_end(tmp_path):
    "An OME-Zarr 0.4 HCS plate: one row per well, field and channel; values equal the measures of the arrays."
    import numpy as np
    import zarr
    from microscopy_toolkit.qc.measures import image_quality
    from microscopy_toolkit.qc.plate import synthetic_field

    rng = np.random.default_rng(0)
    fields = {w: np.stack([synthetic_field(rng, 48) for _ in range(2)]).astype(np.uint16) for w in ('B/3', 'C/12')}
    root = zarr.open_group(str(tmp_path/'p.zarr'), mode='w', **({'zarr_format': 2} if zarr.__version__ >= '3' else {}))
    root.attrs['plate'] = {'name': 'Z', 'wells': [{'path': w} for w in fields], 'version': '0.4'}
    for w, f in fields.items():
        root.require_group(w).attrs['well'] = {'images': [{'path': '0'}]}
        img = root.require_group(f'{w}/0')
        img.attrs['multiscales'] = [{'axes': [{'name': 'c'}, {'name': 'y'}, {'name': 'x'}], 'datasets': [{'path': '0'}]}]
        new = img.create_array if hasattr(img, 'create_array') else img.create_dataset  # zarr 3 / zarr 2
        new('0', shape=f.shape, dtype=f.dtype)[:] = f
    df, _ = run_qc(tmp_path/'p.zarr', tmp_path/'out', show_progress=False)
    assert sorted(zip(df.well, df.channel)) == [('B03', 'c0'), ('B03', 'c1'), ('C12', 'c0'), ('C12', 'c1')]
    row = df[(df.well == 'C12') & (df.channel == 'c1')].iloc[0]
    assert row.FocusScore == image_quality(fields['C/12'][1])['FocusScore']
