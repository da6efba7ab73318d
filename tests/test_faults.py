"""The faults of issue 19, replayed through the `mtk` command line as a user meets them.

Each case checks the exit status, that the message names the file (or the flag) at fault, and that nothing partial
or stale is left behind; the last tests check the permissions of every kind of output. The cases call `cli.main` in
this process (`mtk_main`: the same parser, verbs, messages and exit codes as the installed command, without an
interpreter and torch start-up per call); Ctrl-C is sent to a real `mtk` process, where a signal is the point. One
tiny matching model is trained once for the module (tiny SD, 2 generated images, 1 epoch)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import mtk_main

pytestmark = pytest.mark.xdist_group('faults')   # one worker: the trained checkpoint is shared by the module
UMASK = 0o002                                     # outputs must be 0o664 then: neither mkstemp's 0o600 nor a default


def _image(seed=0, size=64):
    "A (size, size) uint16 image of bright blobs on a dark background."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    for y, x in rng.integers(8, size - 8, (6, 2)):
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 18)
    return (img * 3000 + rng.integers(0, 100, img.shape)).astype(np.uint16)


def _refused(res, *words):
    "Exit status 2, one `mtk: error:` line on stderr naming every one of `words`, no traceback."
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert 'Traceback' not in res.stderr, res.stderr
    assert res.stderr.count('mtk: error:') == 1, res.stderr
    message = res.stderr[res.stderr.index('mtk: error:'):]      # the error and its lines of advice
    for w in words:
        assert str(w) in message, (w, message)


@pytest.fixture(autouse=True, scope='module')
def umask():
    "Every output of this module is written under `UMASK`, and each test checks the permissions of what it wrote."
    old = os.umask(UMASK)
    yield
    os.umask(old)


def _shareable(*folders_or_files):
    "Assert that every file given or under the folders has the umask's permissions; return their suffixes."
    files = [p for f in map(Path, folders_or_files) for p in ([f] if f.is_file() else f.rglob('*')) if p.is_file()]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert files and set(modes.values()) == {oct(0o666 & ~UMASK)}, modes
    return {p.suffix for p in files}


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory, umask):
    "A tiny matching model (segmentation head), trained once; its run folder."
    run = tmp_path_factory.mktemp('faults') / 'run'
    res = mtk_main('match', 'train', '--synthetic', '2', '--epochs', '1', '--image-size', '64', '-o', run, '--device', 'cpu')
    assert 'warning: no --sd given: using --sd tiny' in res.stderr          # no silent toys
    assert _shareable(run) == {'.pt', '.csv', '.json'}                       # checkpoints, history, config
    return run


# ---- axes: ambiguous layouts are refused with the flag to pass, before anything is written or loaded


@pytest.mark.parametrize('name, data, flag', [
    ('three_planes.tif', np.zeros((3, 32, 32), np.uint16), '--axes ZYX'),     # tifffile's defaults: looks like RGB
    ('plain_czyx.tif', np.zeros((2, 5, 32, 32), np.uint16), '--axes CZYX'),   # plain 4-D, no metadata
])
def test_ambiguous_layouts_are_refused_naming_the_flag(tmp_path, name, data, flag):
    tifffile.imwrite(tmp_path / name, data)
    res = mtk_main('match', 'segment', tmp_path / name, '-c', tmp_path / 'best.pt', '-o', tmp_path / 'out', check=False)
    _refused(res, tmp_path / name, flag)
    assert 'axes=' not in res.stderr.replace("Python: axes=", '')                # no Python-only advice
    assert not (tmp_path / 'out').exists()


def test_channels_timepoints_and_planes_are_chosen_by_flags(tmp_path):
    from microscopy_toolkit.io import write_stack
    p = write_stack(tmp_path / 'tczyx.tif', np.zeros((2, 3, 4, 16, 16), np.uint16), axes='TCZYX')
    res = mtk_main('match', 'segment', p, '-c', tmp_path / 'best.pt', '-o', tmp_path / 'out', check=False)
    _refused(res, p, '--channel 0..2')
    res = mtk_main('match', 'segment', p, '--channel', '1', '--z', '7', '-c', tmp_path / 'best.pt', '-o', tmp_path / 'out', check=False)
    _refused(res, p, '--z 7 is out of range')
    assert not (tmp_path / 'out').exists()


def test_corrupt_and_unreadable_files_are_named(tmp_path):
    (tmp_path / 'in').mkdir()
    tifffile.imwrite(tmp_path / 'in' / 'good.tif', _image())
    (tmp_path / 'in' / 'corrupt.tif').write_bytes(b'II*\x00' + b'\x00' * 20)
    res = mtk_main('match', 'segment', tmp_path / 'in', '-c', tmp_path / 'best.pt', '-o', tmp_path / 'out', check=False)
    _refused(res, tmp_path / 'in' / 'corrupt.tif')
    assert not (tmp_path / 'out').exists()


def test_same_output_names_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / 'img.tif', _image())
    Image.fromarray((_image() // 16).astype(np.uint8)).save(tmp_path / 'img.png')
    res = mtk_main('match', 'count', tmp_path / 'img.tif', tmp_path / 'img.png', '-c', tmp_path / 'best.pt', '-o', tmp_path / 'out', check=False)
    _refused(res, 'img.png', 'same outputs')
    assert not (tmp_path / 'out').exists()


def test_bad_training_numbers_write_nothing(tmp_path):
    res = mtk_main('match', 'train', '--synthetic', '2', '--epochs', '-3', '-o', tmp_path / 'run', check=False)
    _refused(res, '--epochs')
    assert not (tmp_path / 'run').exists()


def test_offline_weights_fail_fast_naming_the_place(tmp_path, monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'cache'))
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(tmp_path / 'weights'))
    import socket
    tried = []                                      # fast = no network attempt at all (no timeouts, no retries)

    def no_network(sock, address, *a, **kw):
        tried.append(address)
        raise OSError(f'no network in this test ({address})')

    monkeypatch.setattr(socket.socket, 'connect', no_network)
    t0 = time.process_time()                        # CPU, not wall time: a loaded machine stretches the latter
    res = mtk_main('match', 'train', '--synthetic', '2', '--sd', 'stable-diffusion-v1-4', '-o', tmp_path / 'run', check=False)
    assert tried == [] and time.process_time() - t0 < 60, (tried, time.process_time() - t0)
    _refused(res, 'stable-diffusion-v1-4', 'MTK_WEIGHTS_DIR', 'model_index.json')
    assert not (tmp_path / 'run').exists()


# ---- stacks, folders, names: a model is needed


def test_stacks_pngs_and_mirrored_names(tmp_path, ckpt):
    "A 3-plane stack is segmented plane by plane (labels keep their axes); a PNG folder is read; a/img + b/img both kept."
    stack = np.stack([_image(k) for k in range(3)])
    for sub in ('a', 'b', 'pngs'):
        (tmp_path / sub).mkdir()
    tifffile.imwrite(tmp_path / 'a' / 'img.tif', stack, metadata={'axes': 'ZYX'})
    tifffile.imwrite(tmp_path / 'b' / 'img.tif', stack[2])
    Image.fromarray((stack[2] // 16).astype(np.uint8)).save(tmp_path / 'pngs' / 'cells.png')
    out = tmp_path / 'seg'
    res = mtk_main('match', 'segment', tmp_path / 'a', tmp_path / 'b', tmp_path / 'pngs', '-c', ckpt / 'best.pt', '-o', out)
    with tifffile.TiffFile(out / 'a' / 'img_labels.tif') as tf:
        labels, axes = tf.asarray(), tf.series[0].axes
    assert labels.shape == (3, 64, 64) and axes == 'ZYX'
    np.testing.assert_array_equal(labels[2], tifffile.imread(out / 'b' / 'img_labels.tif'))   # plane 2 = the 2-D file
    assert (out / 'pngs' / 'cells_labels.tif').exists() and (out / 'a' / 'img_overlay.png').exists()
    assert json.loads((out / 'config.json').read_text())['config']['verb'] == 'segment'
    assert str(tmp_path / 'pngs' / 'cells.png') in res.stdout
    assert _shareable(out) == {'.tif', '.png', '.json'}
    # the same command again resumes (nothing to do); another setting is refused; --overwrite starts afresh
    stamp = (out / 'a' / 'img_labels.tif').stat().st_mtime_ns
    mtk_main('match', 'segment', tmp_path / 'a', tmp_path / 'b', tmp_path / 'pngs', '-c', ckpt / 'best.pt', '-o', out)
    assert (out / 'a' / 'img_labels.tif').stat().st_mtime_ns == stamp
    res = mtk_main('match', 'segment', tmp_path / 'b', '-c', ckpt / 'best.pt', '-o', out, '--no-overlays', check=False)
    _refused(res, out, '--overwrite', 'inputs')
    mtk_main('match', 'segment', tmp_path / 'b', '-c', ckpt / 'best.pt', '-o', out, '--no-overlays', '--overwrite')
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob('*') if p.is_file())
    assert left == ['config.json', 'img_labels.tif'], left    # one input: named below its own folder; the rest removed
    # counting a stack: one row per plane
    mtk_main('match', 'count', tmp_path / 'a', '-c', ckpt / 'best.pt', '-o', tmp_path / 'cnt', '--no-overlays')
    rows = (tmp_path / 'cnt' / 'counts.csv').read_text().splitlines()
    assert [r.split(',')[0] for r in rows[1:]] == [f'img_z{k}' for k in range(3)]
    assert _shareable(tmp_path / 'cnt') == {'.csv', '.tif', '.json'}


def test_match_train_into_a_used_folder(ckpt):
    "Another config is refused and leaves the run as it was; the same config resumes instead of starting over."
    args = ['match', 'train', '--synthetic', '2', '--image-size', '64', '-o', ckpt, '--device', 'cpu']
    hist, best = (ckpt / 'history.csv').read_text(), (ckpt / 'best.pt').read_bytes()
    res = mtk_main(*args, '--epochs', '2', '--lr', '1e-3', check=False)
    _refused(res, ckpt, 'epochs 1 -> 2', '--overwrite')
    res = mtk_main(*args, '--epochs', '1')                        # the finished run: resumed, nothing left to train
    assert 'resuming' in res.stderr
    assert (ckpt / 'history.csv').read_text() == hist and (ckpt / 'best.pt').read_bytes() == best


def _interrupt(cmd, wait_for, timeout=900):
    "Start `cmd`, send SIGINT once `wait_for()` holds, and return (exit status, stderr)."
    default_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)   # as in a terminal, however pytest was started
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c)
    t0 = time.time()
    while not wait_for() and time.time() - t0 < timeout and proc.poll() is None:
        time.sleep(0.05)
    if not wait_for():                  # never got there (ended, or a machine too busy): say so, leave no process
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{cmd} ended ({proc.returncode}) or timed out before the moment to interrupt it:\n{out}\n{err}")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_ctrl_c_is_one_line_and_the_run_resumes(tmp_path):
    run = tmp_path / 'run'
    exe = Path(sys.executable).with_name('mtk')
    cmd = [str(exe) if exe.exists() else 'mtk', 'match', 'train', '--synthetic', '2', '--epochs', '1000', '--patience',
           '1000', '--image-size', '64', '--sd', 'tiny', '-o', str(run), '--device', 'cpu']   # never done before Ctrl-C
    rc, err = _interrupt(cmd, lambda: (run / 'last.pt').exists())
    assert rc == 130 and 'Traceback' not in err, (rc, err)
    assert err.strip().splitlines() == ['mtk: interrupted; files written so far are complete: run the same command again '
                                        'to resume']
    stamp = (run / 'last.pt').stat().st_mtime_ns
    rc, err = _interrupt(cmd, lambda: (run / 'last.pt').stat().st_mtime_ns != stamp)   # one more epoch, then Ctrl-C
    assert rc == 130 and err.startswith('resuming the run in'), err
    assert not (run / 'history.csv').exists()                 # written when a run finishes, never half-way


# ---- tracking: cellpose masks, stale frames


def _timelapse(tmp_path, n):
    "A generated n-frame time-lapse as one TYX TIFF, its ground truth in CTC folders, and its labels in cellpose's names."
    from microscopy_toolkit.synthetic.cells import cell_timelapse, write_ctc_gt
    tl = cell_timelapse(n_frames=n, size=48, n_cells=4, radius=(4, 6), seed=3, division_prob=0.0, min_age=1)
    write_ctc_gt(tmp_path / f'seq{n}', tl)
    frames, cp = tmp_path / f'frames{n}.tif', tmp_path / f'cp{n}'
    cp.mkdir()
    tifffile.imwrite(frames, (tl.frames * 1000).astype(np.uint16), metadata={'axes': 'TYX'})
    for t, lab in enumerate(tl.labels):
        tifffile.imwrite(cp / f'frame{t}_cp_masks.tif', lab.astype(np.uint16))
    return frames, cp


def test_track_run_cellpose_masks_and_no_stale_frames(tmp_path):
    long, cp_long = _timelapse(tmp_path, 8)
    short, cp_short = _timelapse(tmp_path, 5)
    res_dir = tmp_path / '01_RES'
    res = mtk_main('track', 'run', long, '--masks', cp_long, '--linker', 'overlap', '-o', res_dir)
    assert 'tracking 8 frames' in res.stderr
    assert len(list(res_dir.glob('mask*.tif'))) == 8
    res = mtk_main('track', 'run', short, '--masks', cp_short, '--linker', 'overlap', '-o', res_dir, check=False)
    _refused(res, res_dir, '--overwrite')
    assert len(list(res_dir.glob('mask*.tif'))) == 8                    # refused: the old result untouched
    mtk_main('track', 'run', short, '--masks', cp_short, '--linker', 'overlap', '-o', res_dir, '--overwrite')
    assert sorted(p.name for p in res_dir.glob('mask*.tif')) == [f'mask{t:03d}.tif' for t in range(5)]
    ev = mtk_main('track', 'eval', res_dir, tmp_path / 'seq5' / '01_GT', '--json', tmp_path / 'm.json')
    assert 'DET: 1.0000' in ev.stdout and 'evaluating' in ev.stderr      # a valid CTC folder, no stale frame in it
    assert _shareable(res_dir, tmp_path / 'm.json') == {'.tif', '.txt', '.json'}
    bad = mtk_main('track', 'run', short, '--masks', cp_long, '--linker', 'overlap', '-o', tmp_path / 'x', check=False)
    _refused(bad, cp_long, '8 label images')
    assert not (tmp_path / 'x').exists()


# ---- help


def test_help_shows_defaults_and_an_example():
    out = mtk_main('match', 'train', '--help').stdout
    assert 'default: 100' in out and 'example:\n  mtk match train' in out
    out = mtk_main('track', 'run', '--help').stdout
    assert '--axes AXES' in out and 'example:\n  mtk track run' in out and '_cp_masks.tif' in out
