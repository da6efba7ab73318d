"""Equivalence of our released MicroscopyMatching TRACKING path (`tracking.released`) with the authors' code, stage by
stage, on the same random weights and the same short synthetic time-lapse.

Their tracking (`tracking_one.TrackingModule.track`, called by `inference_track.py`) cannot run as published here:
it calls `torch.cuda.ipc_collect()` unconditionally (no CUDA: it raises), and with random weights every frame's
segmentation is empty, where their exemplar propagation stops (`UnboundLocalError: adapted_emb`). So this harness
shims, in their process only:
- `torch.cuda.ipc_collect` -> a no-op;
- the Cellpose-SAM transformer + Cellpose dynamics call of their per-frame segmentation (`vit_model.eval`) -> the
  given label image of that frame at 512 px (recording the image and the feature image it was given). Everything
  before it (VAE, UNet, attention stack, head's feature image) and after it (boxes of the mask, the exemplar
  propagated to the next frame at token 5, region features, per-object attention, tracking transformer, association
  windows, greedy linking, CTC tracks) is their code on real objects. Our side replaces the same call the same way
  (`run_tiled` / `flows_to_masks`); the transformer and dynamics themselves are compared in tools/mm_equivalence.py;
- their global RNG is reseeded before every VAE encoding (their passes each draw fresh noise; ours are seeded).
Both sides get the same random SD v1.4-shaped weights (made by tools/mm_equivalence.py `make`) and a random
`microscopy_matching_tra.pth` in their key format (tracker and object-embedding parts drawn with seeded generators,
so CI can rebuild them), and the task token as their code runs it ('as_run').

Rerun (their venv and repository as in tools/mm_equivalence.py; about 15 minutes per side on 2 busy CPU cores,
peak ~10 GB each: never run two sides at once on a small machine):

    python tools/mm_equivalence.py make --work /scratch/mmwork            # SD folder + task_embed.pth (once)
    python tools/mm_track_equivalence.py make --work /scratch/mmtrack --sd-work /scratch/mmwork --repo /scratch/mm
    /usr/bin/time -v /scratch/mmvenv/bin/python tools/mm_track_equivalence.py theirs --work /scratch/mmtrack \
        --repo /scratch/mm
    /usr/bin/time -v python tools/mm_track_equivalence.py ours --work /scratch/mmtrack
    python tools/mm_track_equivalence.py compare --work /scratch/mmtrack   # writes report.json
    python tools/mm_track_equivalence.py fixture --work /scratch/mmtrack   # tests/fixtures/mm_track_equivalence.npz

`theirs` imports only their code, their pins and numpy (this file is run by their interpreter for that step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SEED = 0
SIZE, FRAMES, CELLS = 128, 4, 5  # their loader brings every frame to 512 px anyway; 4 frames: one 4-frame window (CPU time)
TRACKER_SEED, EMBED_SEED = 11, 12  # seeds of the tracker's and the object embedding's weights (CI rebuilds them)
EMB_OBJECTS = 3  # per-object maps kept in the CI fixture (window 0, its first objects)
ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'mm_track_equivalence.npz'
sys.path.insert(0, str(Path(__file__).resolve().parent))
from mm_equivalence import _patch_offline, _wrap, peak_gb, save_npz  # noqa: E402  (stdlib + numpy only)


# ----------------------------------------------------------------------------------------------- make (our env)
def seeded_parts() -> dict:
    """The tracker's and the object embedding's weights (authors' keys), from seeded generators: CI rebuilds them
    without the 1.4 GB checkpoint."""
    import torch.nn as nn
    from microscopy_toolkit.tracking.released import TrackingTransformer, ReleasedTrackHead, random_released_state

    trk, emb = nn.Module(), nn.Module()
    trk.tracker = TrackingTransformer()
    emb.head = ReleasedTrackHead(64, nn.Identity(), 320)
    return {**random_released_state(trk, TRACKER_SEED), **random_released_state(emb, EMBED_SEED)}


def make(work: Path, sd_work: Path, repo: Path):
    "Frames t000.tif ..., their labels, the random tracking checkpoint, links to the SD folder and their `_utils`."
    import tifffile
    import torch
    from microscopy_toolkit.synthetic.cells import cell_timelapse
    from microscopy_toolkit.matching.released import to_author_keys
    from microscopy_toolkit.tracking.released import ReleasedTracking

    (work / 'frames').mkdir(parents=True, exist_ok=True)
    tl = cell_timelapse(n_frames=FRAMES, size=SIZE, n_cells=CELLS, radius=(8, 12), seed=SEED, division_prob=0.0)
    f = np.asarray(tl.frames, np.float32)
    frames = np.round((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)
    for t, fr in enumerate(frames):
        tifffile.imwrite(work / 'frames' / f't{t:03d}.tif', fr)
    np.savez_compressed(work / 'sequence.npz', frames=frames, labels=tl.labels.astype(np.uint16), tracks=tl.tracks)
    if not (work / 'tra.pth').is_file():
        torch.manual_seed(SEED + 6)
        state = to_author_keys(ReleasedTracking().state_dict())
        state.update(seeded_parts())
        torch.save(state, work / 'tra.pth')
    for name, target in [('sd', sd_work / 'sd'), ('task_embed.pth', sd_work / 'task_embed.pth'),
                         ('_utils', repo / '_utils')]:  # fmt: skip
        if not (work / name).exists():
            (work / name).symlink_to(target)
    print(f'wrote {work}: frames/ ({FRAMES} x {SIZE} px, {CELLS} cells), sequence.npz, tra.pth')


def labels512(labels: np.ndarray) -> np.ndarray:
    "The label images at 512 px by repetition (their nearest resize back to the frame size gives them exactly)."
    k = 512 // labels.shape[-1]
    return labels.repeat(k, -2).repeat(k, -1)


# ----------------------------------------------------------------------------------------------- theirs (their venv)
def theirs(work: Path, repo: Path):
    "Their TrackingModule.track on the frames, shimmed as the module docstring says; records every stage."
    os.environ['HF_HUB_OFFLINE'] = '1'
    os.environ['HF_HOME'] = str(work / 'hf_home')
    sys.path.insert(0, str(repo))
    os.chdir(work)  # their RunConfig makes ./outputs; TrackingTransformer reads ./_utils/config.yaml
    import torch

    _patch_offline(work)
    torch.cuda.ipc_collect = lambda: None  # shim 1: their unconditional CUDA call
    import tracking_one
    from models.tra_post_model.tracking import graph_to_ctc

    t0, c0 = time.perf_counter(), time.process_time()
    m = tracking_one.TrackingModule(use_box=False)
    res = m.load_state_dict(torch.load(work / 'tra.pth', map_location='cpu'), strict=True)
    m.eval()
    load_s = time.perf_counter() - t0
    seq = np.load(work / 'sequence.npz')
    big, cap, n = labels512(seq['labels'].astype(np.int32)), {}, {'seg': 0, 'unet': 0, 'win': 0, 'box': 0}
    _wrap(m.stable.vae, 'encode', before=lambda *a, **k: torch.manual_seed(SEED))  # shim 3: same noise every pass

    def unet_before(sample, t, ehs, *a, **k):
        cap[f'cond_{n["unet"]}'] = ehs[0, :8]
        n['unet'] += 1

    _wrap(m.stable.unet, 'forward', before=unet_before)
    reg, vm = m.counting_adapter.regressor, m.counting_adapter.regressor.vit_model

    def seg_before(img, attn_stack, feature_list, mask, training=False):
        cap[f'seg_attn_{n["seg"]}'] = attn_stack

    _wrap(reg, 'forward_seg', before=seg_before)

    def vit_eval(x, feat=None, **k):  # shim 2: the given labels instead of Cellpose-SAM + dynamics
        i = n['seg']
        cap[f'seg_img_{i}'], cap[f'seg_feat_{i}'] = x, feat
        n['seg'] += 1
        return big[i]

    vm.eval = vit_eval

    def boxes_after(out):
        cap[f'objmaps_{n["box"]}'] = out['exemplar_attn_64'][0]
        n['box'] += 1

    _wrap(m, 'forward_boxes', after=boxes_after)

    def trk_before(coords, feats, attn_feat=None):
        w = n['win']
        cap[f'win_coords_{w}'], cap[f'win_feats_{w}'], cap[f'win_emb_{w}'] = coords[0], feats[0], attn_feat[0]

    _wrap(m.track_model, 'forward', before=trk_before, after=lambda out: cap.__setitem__(f'win_logits_{n["win"]}', out[0]))

    def norm_after(out):
        cap[f'win_A_{n["win"]}'] = out[0]
        n['win'] += 1

    _wrap(m.track_model, 'normalize_output', after=norm_after)
    gf = tracking_one.get_features

    def get_features(*a, **k):
        out = gf(*a, **k)
        cap['rf_coords'] = np.concatenate([f.coords for f in out])
        cap['rf_feats'] = np.concatenate([f.features_stacked for f in out])
        cap['rf_t'] = np.concatenate([f.timepoints for f in out])
        cap['rf_labels'] = np.concatenate([f.labels for f in out])
        return out

    tracking_one.get_features = get_features
    pw = m.predict_windows

    def predict_windows(*a, **k):
        out = pw(*a, **k)
        cap['edges'] = np.array([(i, j, v) for (i, j), v in out['weights']], np.float64).reshape(-1, 3)
        return out

    m.predict_windows = predict_windows
    t1, c1 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        graph, masks = m.track(file_dir=str(work / 'frames'), boxes=None, mode='greedy')
    run_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    save_npz(work / 'theirs.npz', cap)  # first: their CTC writer below may fail on a tifffile without zstd
    df, tracked = graph_to_ctc(graph, masks, outdir=None)  # the tracks and relabelled masks, not written
    cap['masks'], cap['tracked'] = masks, tracked
    cap['tracks'] = df[['label', 't1', 't2', 'parent']].to_numpy()  # CTC rows L B E P (not their docstring's names)
    save_npz(work / 'theirs.npz', cap)
    meta = dict(load_s=load_s, run_s=run_s, cpu_s=cpu_s, peak_gb=peak_gb(), missing=len(res.missing_keys),
                calls=n, torch=torch.__version__)  # fmt: skip
    (work / 'theirs.json').write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


# ----------------------------------------------------------------------------------------------- ours (our env)
def ours(work: Path):
    "Our `released_track` (no masks: it segments) with the same call replaced; records the same stages."
    import torch
    import tifffile
    import microscopy_toolkit.tracking.released as R
    from microscopy_toolkit.models.sd import load_sd
    from microscopy_toolkit.matching.model import Matcher

    t0 = time.perf_counter()
    model = R.load_released_tracking(work / 'tra.pth')
    matcher = Matcher(load_sd(path=work / 'sd'), task_token='as_run')
    load_s = time.perf_counter() - t0
    seq = np.load(work / 'sequence.npz')
    frames = np.stack([tifffile.imread(work / 'frames' / f't{t:03d}.tif') for t in range(FRAMES)])
    big, cap, n = labels512(seq['labels']), {}, {'seg': 0, 'win': 0}

    def run_tiled(net, img, feat, bsize, **kw):
        cap[f'seg_img_{n["seg"]}'], cap[f'seg_feat_{n["seg"]}'] = img, feat
        return np.zeros((3,) + img.shape[:2], np.float32)

    def flows_to_masks(flows, **kw):
        n['seg'] += 1
        return big[n['seg'] - 1]

    R.run_tiled, R.flows_to_masks = run_tiled, flows_to_masks
    _wrap(R, 'track_seg_channels', after=lambda out: cap.__setitem__(f'seg_attn_{n["seg"]}', out))
    sf = R.segment_frame

    def segment_frame(model, matcher, x, cond, *a, **k):
        cap[f'cond_{n["seg"]}'] = cond[0, :8]
        return sf(model, matcher, x, cond, *a, **k)

    R.segment_frame = segment_frame
    wa = R.window_association

    def window_association(tracker, t, coords, feats, emb):
        w = n['win']
        cap[f'win_t_{w}'], cap[f'win_coords_{w}'], cap[f'win_feats_{w}'], cap[f'win_emb_{w}'] = t, coords, feats, emb
        out = wa(tracker, t, coords, feats, emb)
        cap[f'win_A_{w}'] = out
        n['win'] += 1
        return out

    R.window_association = window_association
    _wrap(R, 'region_features', after=lambda out: cap.update(rf_coords=out[0], rf_feats=out[1]))
    ra = R.released_associations

    def released_associations(*a, **k):
        out = ra(*a, **k)
        cap['edges'] = out[['src', 'dst', 'weight']].to_numpy(np.float64)
        return out

    R.released_associations = released_associations
    t1, c1 = time.perf_counter(), time.process_time()
    res, tracks, _ = R.released_track(frames, model, matcher)
    run_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    cap['tracked'], cap['tracks'] = res, tracks
    save_npz(work / 'ours.npz', cap)
    meta = dict(load_s=load_s, run_s=run_s, cpu_s=cpu_s, peak_gb=peak_gb(), calls=n, torch=torch.__version__)
    (work / 'ours.json').write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


# ----------------------------------------------------------------------------------------------- compare
def _diff(a, b) -> dict:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return dict(shape_theirs=list(a.shape), shape_ours=list(b.shape))
    d = float(np.abs(a - b).max()) if a.size else 0.0
    return dict(max_abs=d, range=float(np.ptp(a)) if a.size else 0.0, shape=list(a.shape))


def canonical_tracks(tracked: np.ndarray, tracks: np.ndarray, labels: np.ndarray) -> list:
    "Each track as the sorted (frame, given label) objects it covers, with its parent's in the same form."
    cover = {}
    for t, (r, g) in enumerate(zip(tracked, labels)):
        for a, b in set(zip(r[r > 0].tolist(), g[r > 0].tolist())):
            cover.setdefault(a, []).append((t, b))
    ids = {int(row[0]): tuple(sorted(cover.get(int(row[0]), []))) for row in tracks}
    return sorted((ids[int(r[0])], ids.get(int(r[3]), ())) for r in tracks)


def compare(work: Path) -> dict:
    th, us = np.load(work / 'theirs.npz', allow_pickle=True), np.load(work / 'ours.npz', allow_pickle=True)
    labels = np.load(work / 'sequence.npz')['labels']
    from microscopy_toolkit.matching.cellpose import cellpose_normalize

    rep = {}
    for t in range(FRAMES):
        rep[f'frame {t}: exemplar at token 5 (prompt rows 0-7)'] = _diff(th[f'cond_{t}'], us[f'cond_{t}'])
        rep[f'frame {t}: attention stack (4 x 64 x 64)'] = _diff(th[f'seg_attn_{t}'], us[f'seg_attn_{t}'])
        rep[f'frame {t}: head feature image (3 x 512 x 512)'] = _diff(th[f'seg_feat_{t}'], us[f'seg_feat_{t}'])
        img = cellpose_normalize(np.moveaxis(th[f'seg_img_{t}'], 0, -1))
        rep[f'frame {t}: Cellpose-SAM input, normalised'] = _diff(img, us[f'seg_img_{t}'])
    rep['region features: centroids'] = _diff(th['rf_coords'], us['rf_coords'])
    rep['region features: 7 features'] = _diff(th['rf_feats'], us['rf_feats'])
    w = 0
    while f'win_A_{w}' in th.files and f'win_A_{w}' in us.files:
        rep[f'window {w}: object embeddings'] = _diff(th[f'win_emb_{w}'], us[f'win_emb_{w}'])
        t = th[f'win_coords_{w}'][:, 0]
        fwd = (t[None, :] - t[:, None]) == 1  # their normalize_output keeps only these; only these become edges
        rep[f'window {w}: associations t -> t+1 (quiet softmax)'] = _diff(th[f'win_A_{w}'][fwd], us[f'win_A_{w}'][fwd])
        w += 1
    rep['windows'] = dict(theirs=sum(k.startswith('win_A_') for k in th.files), ours=w)
    e_th = {(int(i), int(j)): v for i, j, v in th['edges']}
    e_us = {(int(i), int(j)): v for i, j, v in us['edges'] if v >= 0.05}
    common = sorted(set(e_th) & set(e_us))
    rep['edges'] = dict(theirs=len(e_th), ours=len(e_us), common=len(common),
                        max_abs=max([abs(e_th[k] - e_us[k]) for k in common], default=0.0))  # fmt: skip
    a = canonical_tracks(th['tracked'], th['tracks'], labels)
    b = canonical_tracks(us['tracked'], us['tracks'], labels)
    rep['tracks'] = dict(theirs=len(a), ours=len(b), equal=a == b)
    meta = {s: json.loads((work / f'{s}.json').read_text()) for s in ('theirs', 'ours')}
    rep['cost'] = {s: {k: meta[s][k] for k in ('run_s', 'cpu_s', 'peak_gb', 'load_s')} for s in meta}
    (work / 'report.json').write_text(json.dumps(rep, indent=1))
    print(json.dumps(rep, indent=1))
    return rep


def fixture(work: Path):
    "The CI fixture: the sequence, their region features, per-window inputs and outputs, a few objects' maps, tracks."
    th = np.load(work / 'theirs.npz', allow_pickle=True)
    seq = np.load(work / 'sequence.npz')
    out = dict(frames=seq['frames'], labels=seq['labels'], rf_coords=th['rf_coords'], rf_feats=th['rf_feats'],
               edges=th['edges'], tracks=th['tracks'], tracked=th['tracked'].astype(np.uint16))  # fmt: skip
    w = 0
    while f'win_A_{w}' in th.files:
        for k in ('coords', 'feats', 'emb', 'A'):
            out[f'win_{k}_{w}'] = th[f'win_{k}_{w}'].astype(np.float32)
        w += 1
    # window 0 calls forward_boxes twice per frame (previous, next): frame 0's object maps on frames 0 and 1
    out['obj_prev'] = th['objmaps_0'][:EMB_OBJECTS].astype(np.float32)
    out['obj_next'] = th['objmaps_1'][:EMB_OBJECTS].astype(np.float32)
    out['obj_emb'] = th['win_emb_0'][:EMB_OBJECTS].astype(np.float32)
    np.savez_compressed(FIXTURE, **out)
    print(f'wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} kB)')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('step', choices=['make', 'theirs', 'ours', 'compare', 'fixture'])
    p.add_argument('--work', type=Path, required=True)
    p.add_argument('--sd-work', type=Path, default=None, help='make: the folder tools/mm_equivalence.py made')
    p.add_argument('--repo', type=Path, default=None, help="their repository (make, theirs)")
    a = p.parse_args(argv)
    if a.step == 'make':
        make(a.work, a.sd_work, a.repo)
    elif a.step == 'theirs':
        theirs(a.work, a.repo)
    elif a.step == 'ours':
        ours(a.work)
    elif a.step == 'compare':
        compare(a.work)
    else:
        fixture(a.work)


if __name__ == '__main__':
    main()
