"""Our released MicroscopyMatching path against values recorded from the authors' code (tools/mm_equivalence.py).

The fixtures were written by the authors' own code in its pinned environment, on random weights of the released
architectures; these tests run our code on the same inputs in seconds. The full-size stage-by-stage run (SD v1.4
UNet, ViT-L) is in tools/mm_equivalence.py; its per-stage numbers are kept in tests/fixtures/mm_equivalence.json.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import same_partition

FIX = Path(__file__).parent / 'fixtures'
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tools'))
import mm_equivalence as H  # noqa: E402  the harness: seeds, boxes, probe inputs


@pytest.fixture(scope='module')
def rec():
    return dict(np.load(FIX / 'mm_equivalence.npz'))


def decode(dP, cellprob, cellprob_threshold=0.0, flow_threshold=0.4):
    "Flows + cell probability → masks; defaults: their settings (flow 0.4, cellprob 0, min size 15, 200 steps)."
    from cellpose import dynamics

    return dynamics.resize_and_compute_masks(dP, cellprob, niter=200, cellprob_threshold=cellprob_threshold,
                                             flow_threshold=flow_threshold, min_size=15, max_size_fraction=0.4)


def test_decode_synthetic_flows(rec):
    "Cellpose dynamics give their masks on flows of known cells (and those masks are the cells)."
    masks = decode(rec['syn_dP'], rec['syn_cellprob'])
    assert rec['syn_masks'].max() >= 10
    assert same_partition(masks, rec['syn_masks'])
    assert ((rec['syn_masks'] > 0) == (rec['syn_labels'] > 0)).mean() > 0.95  # and they are the cells


def test_decode_random_weight_flows(rec):
    "The same on a crop of the flows their pipeline produced with random weights (irregular, hard flows)."
    masks = decode(rec['net_dP'], rec['net_cellprob'], cellprob_threshold=-1.0, flow_threshold=0.0)
    assert rec['net_masks'].max() >= 1
    assert same_partition(masks, rec['net_masks'])


def test_cellpose_normalisation(rec):
    "Their image normalisation before the ViT (per-channel 1st-99th percentile) is Cellpose's."
    from cellpose import models, transforms

    out = transforms.normalize_img(rec['norm_in'][None].copy(), **models.normalize_default)[0]
    np.testing.assert_allclose(out, rec['norm_out'], atol=1e-5)
    assert abs(float(np.percentile(out[..., 0], 99)) - 1) < 1e-4


def test_density_resize_keeps_their_count(rec):
    "Density at another size, as the released counting path resizes it (bicubic, then renormalised): their map."
    from microscopy_toolkit.matching.heads import resize_density

    den = torch.from_numpy(rec['den_in'])[None]
    ours = resize_density(den, (48, 40), mode='bicubic')[0].numpy()
    theirs = rec['den_out']
    assert abs(ours.sum() - theirs.sum()) <= 1e-5 * abs(theirs.sum())
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()  # measured 5.1e-7 of 0.61
    bilinear = resize_density(den, (48, 40))[0].numpy()  # the toolkit's own heads: another kernel, the same count
    assert np.abs(bilinear - theirs).max() > 1e-2 * np.abs(theirs).max()


@pytest.fixture(scope='module')
def counting_model():
    from microscopy_toolkit.matching.released import ReleasedCounting

    torch.manual_seed(H.SEED + 4)  # the harness's cnt.pth
    return ReleasedCounting().eval()


def test_loca_probe(rec, counting_model):
    "LOCA response map and exemplar embedding on the same weights, image and boxes as their code."
    from microscopy_toolkit.matching.exemplar import IMAGENET_MEAN, IMAGENET_STD
    from microscopy_toolkit.matching.released import loca_responses, to_author_keys

    model = counting_model
    total = sum(float(v.double().sum()) for v in to_author_keys(model.state_dict()).values())
    assert abs(total - float(rec['cnt_weight_sum'])) < 1e-6 * abs(total), 'random init changed: rerun the harness'
    x = torch.from_numpy(H.probe_image()).permute(2, 0, 1)[None]
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    boxes = torch.tensor(H.PROBE_BOXES)[None]
    with torch.no_grad():
        resp = loca_responses(model.exemplar_encoder, x, boxes)[-1]
        emb = model.projector(resp, boxes)[0]
    theirs = rec['loca_response'].astype(np.float32)
    span = theirs.max() - theirs.min()
    assert np.abs(resp[0].numpy() - theirs).max() <= 2e-3 * span  # float16 record
    np.testing.assert_allclose(emb.numpy(), rec['loca_emb'], rtol=0, atol=2e-3 * np.abs(rec['loca_emb']).max())


def test_box_mode_exemplar_token(rec, counting_model):
    """Mode S as their full run did it (256 px image, one box in its pixels): the box rescaled to the 512 px input,
    LOCA on the prepared image, the projector's token written into the prompt. Their recorded token, our code."""
    from microscopy_toolkit.matching.exemplar import IMAGENET_MEAN, IMAGENET_STD
    from microscopy_toolkit.matching.released import _count_boxes, loca_responses, scale_by_dtype
    from microscopy_toolkit.matching.sd import prepare_images

    img = H.test_image()  # the harness's image.png (PNG is lossless)
    boxes = _count_boxes(H.BOX, img.shape[:2], 512)
    np.testing.assert_array_equal(boxes.numpy(), rec['box_loca_boxes'])  # measured: equal
    x = prepare_images(scale_by_dtype(img), 512, normalize=False)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        resp = loca_responses(counting_model.exemplar_encoder, x, boxes)
        emb = counting_model.projector(resp[-1], boxes)[0].numpy()
    theirs = rec['box_exemplar_emb'][0]
    assert np.abs(emb - theirs).max() <= 1e-5 * np.abs(theirs).max()  # the full run measured 1.4e-6 of 4.7 (3e-7)
    assert np.abs(theirs).max() > 1  # a real token, not zeros


def test_seg_head_feature_image(rec):
    """Their segmentation head's feature image (full-size box run) from its recorded inputs and weights: LayerNorm of
    attention channels 1 and 3 and the UNet features' mean, bilinear to 512 px, conv 3x3. The full run's 5e-4 (of the
    range) at this stage is the LayerNorm amplifying its inputs' 2e-6 on a near-constant channel: here it is exact."""
    from microscopy_toolkit.matching.released import ReleasedSegHead

    head = ReleasedSegHead(64, vit=torch.nn.Identity())
    state = {k: torch.from_numpy(rec['seghead_' + k.replace('.', '_')]) for k in head.state_dict()}
    head.load_state_dict(state)
    attn = torch.zeros(1, 4, 64, 64)
    attn[0, [1, 3]] = torch.from_numpy(rec['seghead_attn13'])
    with torch.no_grad():
        out = head.features(attn, torch.from_numpy(rec['seghead_feat_mean'])[None, None])[0, :, ::8, ::8].numpy()
    theirs = rec['seghead_out']
    assert np.abs(out - theirs).max() <= 1e-5 * (theirs.max() - theirs.min())  # measured 0 on the whole image
    swapped = attn[:, [0, 3, 2, 1]]  # the other pair of channels gives another image: the check can fail
    with torch.no_grad():
        other = head.features(swapped, torch.from_numpy(rec['seghead_feat_mean'])[None, None])[0, :, ::8, ::8]
    assert np.abs(other.numpy() - theirs).max() > 1e-2 * (theirs.max() - theirs.min())


def test_recorded_full_run():
    "The recorded full-size run (SD v1.4 + released heads, random weights): every stage within tolerance."
    runs = json.loads((FIX / 'mm_equivalence.json').read_text())['runs']
    assert 'cnt' in runs and len(runs['cnt']['stages']) >= 10
    assert 'seg' in runs and 'Cellpose-SAM ViT on the 9 tiles (flows, cellprob)' in runs['seg']['stages']
    for tag in ('cnt_box', 'seg_box'):  # mode S: the exemplar token and the stages after it
        assert 'exemplar embedding (projector)' in runs[tag]['stages'], tag
        assert len(runs[tag]['stages']) >= 10, tag
    for tag, run in runs.items():
        for stage, d in run['stages'].items():
            assert 'error' not in d, (tag, stage, d)
            if 'equal_fraction' in d:
                assert d['equal_fraction'] == 1.0, (tag, stage, d)
            elif stage.startswith('self-cross map'):  # random weights: ~constant maps (range 1e-4 of the values)
                assert d['rel_to_max'] < 1e-5, (tag, stage, d)
            else:
                assert d['rel_to_range'] < 1e-3, (tag, stage, d)


def test_tiling_and_blending(rec):
    "Their tiling (256 px tiles, overlap 0.1, tapered blending) is Cellpose's `run_net`: checked with a per-pixel net."
    from cellpose import core

    class PixelNet(torch.nn.Module):
        device, dtype = torch.device('cpu'), torch.float32

        def forward(self, x):
            return x, torch.ones(len(x), 256)

    img, feat = H.tile_inputs()
    yf, _ = core.run_net(PixelNet(), (img + 0.5 * feat)[None], bsize=256, batch_size=8, tile_overlap=0.1)
    np.testing.assert_allclose(yf[0, ::4, ::4], rec['tiles_out'], atol=1e-4)
    assert abs(yf.astype(np.float64).sum() - float(rec['tiles_sum'])) < 1e-3 * abs(float(rec['tiles_sum'])) + 1e-2
