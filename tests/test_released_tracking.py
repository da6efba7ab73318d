"""The released MicroscopyMatching tracker (tracking.released, issue 15): every key and shape of the authors' tracking
checkpoint, equality with the `trackastra` package on its recorded outputs, linking from hand-set associations where
the authors' code cannot run (CPU, an empty first frame, fewer than 4 frames), and `mtk track run` without `-c` on a
weights folder holding a tiny random checkpoint in the authors' format."""
import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import mtk_main, run_mtk
import microscopy_toolkit.tracking.released as released
from microscopy_toolkit.matching.model import Matcher
from microscopy_toolkit.matching.released import AUTHOR_PREFIXES, load_released, read_manifest, to_our_keys
from microscopy_toolkit.models.sd import load_tiny_sd
from microscopy_toolkit.synthetic.cells import cell_timelapse, write_ctc_gt
from microscopy_toolkit.tracking.ctc import read_ctc_result, validate_ctc
from microscopy_toolkit.tracking.released import (
    TRACKER_CONFIG, ReleasedTracking, TrackingTransformer, causal_norm, load_released_tracking, random_released_state,
    region_features, released_track, released_track_segment, _percentile_norm,
)

FIX = Path(__file__).parent / 'fixtures'


def small_config(matcher, image_size: int | None = None) -> dict:
    "Sizes of a tiny released-architecture model for `matcher`'s SD at `image_size` (the head's grid: the latent grid)."
    S = image_size or matcher.sd.image_size
    G, C = S * matcher.grid // matcher.sd.image_size, matcher.feat_channels
    return dict(encoder=dict(dim=16, heads=2, layers=1, steps=2, mlp_factor=2, grid=G, feat_channels=C),
                projector=dict(dim=16, out=matcher.sd.context_dim, size=S), grid=G,
                vit=dict(embed_dim=32, depth=2, heads=2, global_attn=(1,), window=2, img_size=64, ps=8, bsize=16),
                tracker=dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, pos_embed_per_dim=8,
                             feat_embed_per_dim=4))


class HandTracker(torch.nn.Module):
    "Association logits set by hand: 8 minus the distance in px, so each object links to its nearest successor."
    config = dict(spatial_pos_cutoff=256)

    def forward(self, coords, feats, attn_feat):
        return 8 - torch.cdist(coords[..., 1:], coords[..., 1:])


@pytest.fixture(scope='module')
def tiny():
    "The tiny SD (32 px), and a tiny released model with hand-set associations."
    matcher = Matcher(load_tiny_sd(image_size=32))
    small = small_config(matcher)
    state = random_released_state(ReleasedTracking(small, device='meta'), seed=0)
    model = load_released_tracking(state, small)
    model.tracker = HandTracker()
    return matcher, model, small


def test_every_key_and_shape_of_the_tracking_checkpoint():
    man = read_manifest(FIX / 'mm_checkpoints' / 'tra.json')
    model = ReleasedTracking(device='meta')
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == to_our_keys(man)
    assert (len(man), round(sum(math.prod(s) for s in man.values()) / 1e6, 1)) == (1023, 356.1)
    meta = {k: torch.empty(s, device='meta') for k, s in man.items()}
    load_released(model, meta, 'tra.json')
    bad = dict(meta)
    bad['track_model.encoder.5.attn.rot_pos_enc.freqs.1'] = torch.empty(1, 1, 12, device='meta')
    with pytest.raises(Exception, match=r'tracker.encoder.5.attn.rot_pos_enc.freqs.1: \(1, 1, 12\)'):
        load_released(ReleasedTracking(device='meta'), bad, 'x.pth')


def test_equal_to_the_trackastra_package():
    "Logits, quiet softmax and region features recorded from trackastra 0.5.6 (tools/trackastra_fixture.py)."
    z = np.load(FIX / 'trackastra_tiny.npz')
    cfg = ast.literal_eval(str(z['config']))
    m = TrackingTransformer(**{k: cfg[k] for k in TRACKER_CONFIG}).eval()
    m.load_state_dict({k: torch.from_numpy(z[f'w_{i}']) for i, k in enumerate(z['keys'])}, strict=True)
    c, t = torch.from_numpy(z['coords']), torch.from_numpy(z['t'])
    with torch.no_grad():
        A = m(c[None], torch.from_numpy(z['feats'])[None])[0]
    np.testing.assert_allclose(A.numpy(), z['logits'], atol=1e-3, rtol=1e-5)
    An = causal_norm(A, t, torch.cdist(c[:, 1:], c[:, 1:]) > 256)
    np.testing.assert_allclose(An.numpy(), z['normalized'], atol=1e-6)
    assert (z['normalized'] > 0.05).sum() >= 2  # not all-zero: the comparison can fail
    cents, feats = region_features(z['masks'], _percentile_norm(z['imgs']))
    np.testing.assert_allclose(cents, z['wr_coords'], atol=1e-4)
    np.testing.assert_allclose(feats, z['wr_feats'], atol=1e-4)


def test_hand_set_associations_link_the_true_lineage(tiny):
    matcher, model, _ = tiny
    tl = cell_timelapse(n_frames=5, size=40, n_cells=3, seed=2, division_prob=0.0)
    res, tracks, edges = released_track(tl.frames, model, matcher, masks=tl.labels)
    validate_ctc(res, tracks)
    np.testing.assert_array_equal(tracks, tl.tracks)
    assert (edges.score >= 0.5).all()


def test_runs_where_the_authors_code_cannot(tiny):
    "A first frame without detections and sequences shorter than their 4-frame window."
    matcher, model, _ = tiny
    tl = cell_timelapse(n_frames=3, size=40, n_cells=3, seed=4, division_prob=0.0)
    masks = tl.labels.copy()
    masks[0] = 0
    res, tracks, _ = released_track(tl.frames, model, matcher, masks=masks)
    validate_ctc(res, tracks)
    assert tracks[:, 1].tolist() == [1] * len(tracks) and (tracks[:, 2] == 2).all()  # every track spans frames 1-2
    assert len(tracks) == len(np.unique(masks[1])) - 1
    one, tr1, e1 = released_track(tl.frames[:1], model, matcher, masks=tl.labels[:1], keep_unlinked=True)
    assert len(e1) == 0 and len(tr1) == len(np.unique(tl.labels[0])) - 1
    one, tr1, e1 = released_track(tl.frames[:1], model, matcher, masks=tl.labels[:1])  # theirs: nothing links
    assert len(tr1) == 0 and one.max() == 0


def test_mtk_track_run_uses_the_released_model_without_c(tmp_path, monkeypatch, tiny):
    "A weights folder with a tiny random tracking checkpoint in the authors' format, driven by the tiny SD."
    small = small_config(tiny[0], 64)  # what `--sd tiny` builds: 64 px
    weights = tmp_path / 'weights'
    weights.mkdir()
    state = random_released_state(ReleasedTracking(small, device='meta'), seed=3)
    torch.save(state, weights / 'microscopy_matching_tra.pth')
    (weights / 'microscopy_matching_tra.pth.small.json').write_text(json.dumps(small))
    tl = cell_timelapse(n_frames=3, size=48, n_cells=3, seed=5, division_prob=0.0)
    write_ctc_gt(tmp_path, tl)
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(weights))
    out = tmp_path / '01_RES'
    res = run_mtk('track', 'run', tmp_path / '01', '--masks', tmp_path / '01_GT' / 'SEG', '--sd', 'tiny', '-o', out,
                  '--keep-unlinked')  # random weights: not every object links
    assert '3 frames:' in res.stdout
    ctc = read_ctc_result(out)
    masks, tracks = ctc.masks, ctc.tracks
    validate_ctc(masks, tracks)
    np.testing.assert_array_equal(masks > 0, tl.labels > 0)  # the given objects, relabelled by track
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(tmp_path / 'empty'))
    bad = run_mtk('track', 'run', tmp_path / '01', '--masks', tmp_path / '01_GT' / 'SEG', '--sd', 'tiny',
                  '-o', tmp_path / 'x', check=False)
    assert bad.returncode != 0 and 'microscopy_matching_tra.pth' in bad.stderr


class TruthFlows:
    """Stands for the Cellpose-SAM transformer in `run_tiled`: the flows (x5) and cell probability (+-5) of the true
    labels of the frame it is called for, so Cellpose's dynamics decode exactly those labels; records its inputs."""

    def __init__(self, labels):
        self.labels, self.calls = labels, []

    def __call__(self, net, img, feat, bsize, **kw):
        from cellpose.dynamics import labels_to_flows

        lab = self.labels[len(self.calls)]
        self.calls.append((img.shape, feat.shape))
        flows = labels_to_flows([lab.astype(np.int64)])[0][2:4] * 5
        return np.concatenate([flows, np.where(lab > 0, 5.0, -5.0)[None]]).astype(np.float32)


def test_released_track_segments_the_frames_their_way(tiny, monkeypatch):
    "A hand-worked 3-frame sequence: the decoded frames are the truth, so the hand-set tracker links the true lineage."
    matcher, model, _ = tiny
    tl = cell_timelapse(n_frames=3, size=32, n_cells=3, radius=(4, 6), seed=7, division_prob=0.0)
    stub = TruthFlows(tl.labels)
    monkeypatch.setattr(released, 'run_tiled', stub)
    res, tracks, _ = released_track(tl.frames, model, matcher)
    assert stub.calls == [((32, 32, 3), (3, 32, 32))] * 3  # one Cellpose-SAM call per frame, at the SD's size
    np.testing.assert_array_equal(tracks, tl.tracks)
    np.testing.assert_array_equal(res > 0, tl.labels > 0)
    pairs = set(zip(res[res > 0].tolist(), tl.labels[res > 0].tolist()))  # synthetic labels are track ids
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 3  # one track per cell
    empty = tl.labels.copy()
    empty[0] = 0  # where the authors' code stops (UnboundLocalError), ours segments on without an exemplar
    monkeypatch.setattr(released, 'run_tiled', TruthFlows(empty))
    masks = released_track_segment(model, matcher, tl.frames)
    np.testing.assert_array_equal(masks > 0, empty > 0)
    for m, e in zip(masks[1:], empty[1:]):  # the same objects, numbered in Cellpose's order
        assert len(set(zip(m[m > 0].tolist(), e[m > 0].tolist()))) == len(np.unique(e)) - 1 == 3


def test_mtk_track_run_segments_without_masks(tmp_path, monkeypatch, tiny):
    "`mtk track run FRAMES` (no -c, no --masks) segments, then links as with the same label images given."
    small = small_config(tiny[0], 64)
    weights = tmp_path / 'weights'
    weights.mkdir()
    torch.save(random_released_state(ReleasedTracking(small, device='meta'), seed=3), weights / 'microscopy_matching_tra.pth')
    (weights / 'microscopy_matching_tra.pth.small.json').write_text(json.dumps(small))
    tl = cell_timelapse(n_frames=3, size=64, n_cells=3, radius=(5, 8), seed=5, division_prob=0.0)
    write_ctc_gt(tmp_path, tl)
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(weights))
    monkeypatch.setattr(released, 'run_tiled', TruthFlows(tl.labels))
    seg = mtk_main('track', 'run', tmp_path / '01', '--sd', 'tiny', '-o', tmp_path / 'seg', '--keep-unlinked')
    assert '3 frames:' in seg.stdout and 'segmenting' in seg.stderr
    given = mtk_main('track', 'run', tmp_path / '01', '--masks', tmp_path / '01_GT' / 'SEG', '--sd', 'tiny',
                     '-o', tmp_path / 'given', '--keep-unlinked')
    a, b = read_ctc_result(tmp_path / 'seg'), read_ctc_result(tmp_path / 'given')
    validate_ctc(a.masks, a.tracks)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.tracks, b.tracks)
    np.testing.assert_array_equal(a.masks > 0, tl.labels > 0)


def test_equal_to_the_authors_tracking_on_their_recorded_run():
    """tools/mm_track_equivalence.py ran their tracking (CPU shim, given labels) on a 4-frame sequence with seeded
    random weights; ours on their recorded inputs: region features, every window's associations, the per-object
    attention embedding, and the links from their edge weights."""
    import sys
    import pandas as pd
    from microscopy_toolkit.matching.released import to_our_keys
    from microscopy_toolkit.tracking.linker import link_tracks, object_table
    from microscopy_toolkit.tracking.released import ReleasedTrackHead, candidate_scores, drop_unlinked, tracking_images
    from microscopy_toolkit.tracking.released import window_association

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
    import mm_track_equivalence as TH

    z = np.load(FIX / 'mm_track_equivalence.npz')
    cents, feats = region_features(z['labels'], tracking_images(z['frames']))
    np.testing.assert_allclose(cents, z['rf_coords'], atol=1e-4)
    np.testing.assert_allclose(feats, z['rf_feats'], atol=1e-4)
    state = to_our_keys(TH.seeded_parts())
    tracker, head = TrackingTransformer().eval(), ReleasedTrackHead(64, torch.nn.Identity(), 320).eval()
    tracker.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith('tracker.')}, strict=True)
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith('head.')}, strict=True)
    windows = sorted(k for k in z.files if k.startswith('win_A_'))
    assert len(windows) >= 1
    with torch.no_grad():
        for w in range(len(windows)):
            c = z[f'win_coords_{w}']
            A = window_association(tracker, c[:, 0].astype(int), c[:, 1:], z[f'win_feats_{w}'],
                                   torch.from_numpy(z[f'win_emb_{w}']))
            t = c[:, 0].astype(int)
            fwd = (t[None, :] - t[:, None]) == 1  # their normalize_output keeps t -> t+1 only: the entries edges use
            np.testing.assert_allclose(A.numpy()[fwd], z[f'win_A_{w}'][fwd], atol=1e-5)
            assert np.abs(z[f'win_A_{w}'][~fwd]).max() == 0 and A.numpy()[fwd].max() > 0.3
        emb = head.object_embedding(torch.from_numpy(z['obj_prev']), torch.from_numpy(z['obj_next']))
    np.testing.assert_allclose(emb.numpy(), z['obj_emb'], atol=1e-5)
    objects, e = object_table(z['labels']), z['edges']
    edges = pd.DataFrame({'src': e[:, 0].astype(np.int64), 'dst': e[:, 1].astype(np.int64), 'weight': e[:, 2]})
    scores = candidate_scores(objects, objects[['y', 'x']].to_numpy(np.float64), edges)
    res, tracks, _ = link_tracks(z['labels'], scores, objects, 'greedy', 0.5, max_children=2, max_gap=1)
    theirs = TH.canonical_tracks(z['tracked'], z['tracks'], z['labels'])
    assert TH.canonical_tracks(res, tracks, z['labels']) != theirs  # they drop the objects no accepted link touches
    res, tracks = drop_unlinked(res, tracks)
    assert TH.canonical_tracks(res, tracks, z['labels']) == theirs and len(theirs) >= 1
    np.testing.assert_array_equal(tracks, z['tracks'])  # their CTC rows L B E P, numbering included
