"CTC metrics cross-checked against the challenge's own Python implementation (py-ctcmetrics) on the same folders."
import numpy as np
import pytest
from scipy import ndimage

from ctc_metrics import evaluate_sequence
from microscopy_toolkit.synthetic.cells import cell_timelapse, write_ctc_gt
from microscopy_toolkit.tracking.ctc import write_ctc_result, evaluate_ctc, validate_ctc


def _cut(labels, tracks, label, at):
    labels, tracks = labels.copy(), tracks.copy()
    new = tracks[:, 0].max() + 1
    labels[at:][labels[at:] == label] = new
    i = np.flatnonzero(tracks[:, 0] == label)[0]
    end = tracks[i, 2]; tracks[i, 2] = at - 1
    tracks[tracks[:, 3] == label, 3] = new
    return labels, np.vstack([tracks, [new, at, end, 0]])


def _variants(tl, rng):
    L, T = tl.labels, tl.tracks
    yield 'perfect', L, T
    long = T[np.argmax(T[:, 2] - T[:, 1])]
    yield 'cut', *_cut(L, T, int(long[0]), int(long[1]) + 2)
    yield 'eroded', np.stack([np.where(ndimage.binary_erosion(m > 0, iterations=2), m, 0) for m in L]), T
    dil = np.stack([ndimage.grey_dilation(m, size=5) for m in L])          # grown masks: overlaps change, labels stay
    yield 'dilated', dil, T
    spur = L.copy(); new = T[:, 0].max() + 1
    free = np.argwhere(ndimage.binary_erosion(spur[2] == 0, np.ones((7, 7))))[0]
    spur[2, free[0] - 2:free[0] + 3, free[1] - 2:free[1] + 3] = new
    yield 'spurious', spur, np.vstack([T, [new, 2, 2, 0]])
    # the last frame's objects dropped (tracks shortened accordingly): FN vertices and missing edges
    drop = L.copy(); drop[-1] = 0
    Tn = T.copy(); last = len(L) - 1
    keep = ~((Tn[:, 1] == last))
    Tn = Tn[keep]; Tn[Tn[:, 2] == last, 2] = last - 1
    yield 'last frame empty', drop, Tn


@pytest.mark.parametrize('seed', [0, 3])
def test_matches_py_ctcmetrics(tmp_path, seed):
    tl = cell_timelapse(n_frames=8, size=64, n_cells=5, seed=seed, division_prob=0.2)
    write_ctc_gt(tmp_path, tl)
    rng = np.random.default_rng(seed)
    for name, labels, tracks in _variants(tl, rng):
        validate_ctc(labels, tracks)                       # only valid results: the reference refuses the others
        res = tmp_path/f'{name.replace(" ", "_")}_RES'
        write_ctc_result(res, labels, tracks)
        ours = evaluate_ctc(res, tmp_path/'01_GT')
        ref = evaluate_sequence(res=str(res), gt=str(tmp_path/'01_GT'), metrics=['SEG', 'TRA', 'DET', 'LNK'])
        for k in ('SEG', 'TRA', 'DET', 'LNK'):
            assert ours[k] == pytest.approx(ref[k], abs=1e-12), (name, k, ours[k], ref[k])
        for k in ('NS', 'FN', 'FP', 'ED', 'EA', 'EC'):
            assert ours[k] == ref[f'AOGM_{k}'], (name, k, ours[k], ref[f'AOGM_{k}'])
