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
    lay = plate_layout(plate)
    serial = measure_plate(lay, tmp_path/'serial', scheduler='sync', show_progress=False)
    cluster = measure_plate(lay, tmp_path/'cluster', workers=2, batch=5, show_progress=False)
    assert len(serial) == 13 and (serial.status == 'failed').sum() == 1
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
