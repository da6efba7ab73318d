"""Record what the `trackastra` package computes, as a small fixture for CI (tests/fixtures/trackastra_tiny.npz).

The released tracking model (microscopy_toolkit.tracking.released) re-implements Trackastra's transformer, its
'quiet softmax' normalisation and its 'regionprops2' object features with Trackastra's key names; CI does not install
trackastra (it pulls motile, gurobipy, ilpy, numba). This script runs the package on seeded random inputs and weights of
a tiny configuration and stores inputs, weights and outputs; tests/test_released_tracking.py compares ours with them.

Rerun (outside CI; a scratch venv that sees this repository's dependencies):
    python -m venv --system-site-packages /tmp/tk && /tmp/tk/bin/pip install trackastra==0.5.6
    /tmp/tk/bin/python tools/trackastra_fixture.py tests/fixtures/trackastra_tiny.npz
"""
import sys

import numpy as np
import torch
from trackastra.data.wrfeat import WRFeatures
from trackastra.model.model import TrackingTransformer
from trackastra.utils import blockwise_causal_norm, normalize

CONFIG = dict(coord_dim=2, feat_dim=7, d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
              pos_embed_per_dim=8, feat_embed_per_dim=4, window=4, spatial_pos_cutoff=256, dropout=0.0,
              attn_positional_bias='rope', attn_positional_bias_n_spatial=16, causal_norm='quiet_softmax',
              attn_dist_mode='v0')


def main(out):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = TrackingTransformer(**CONFIG).eval()
    state = {k: torch.randn_like(v) * 0.5 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    t = np.array([0, 0, 1, 1, 1, 2, 2, 3], np.int64)
    coords = np.c_[t, rng.uniform(0, 400, (len(t), 2))].astype(np.float32)  # some pairs beyond the 256 px cutoff
    feats = rng.normal(size=(len(t), 7)).astype(np.float32)
    with torch.no_grad():
        A = model(torch.from_numpy(coords)[None], torch.from_numpy(feats)[None])
        An = model.normalize_output(A, torch.from_numpy(t)[None], torch.from_numpy(coords)[None])
    masks = np.zeros((2, 40, 50), np.int32)  # objects inside, touching the border and near it
    masks[0, 5:15, 8:20], masks[0, 0:6, 30:37], masks[0, 20:38, 2:9] = 1, 2, 4
    masks[1, 10:22, 12:26], masks[1, 33:40, 40:50] = 3, 7
    imgs = rng.uniform(0, 1000, masks.shape).astype(np.float32)
    wr = WRFeatures.from_mask_img(mask=masks, img=normalize(imgs))
    np.savez_compressed(
        out, config=repr(CONFIG), keys=np.array(list(state)), t=t, coords=coords, feats=feats,
        logits=A[0].numpy(), normalized=An[0].numpy(), masks=masks, imgs=imgs,
        wr_coords=wr.coords, wr_feats=wr.features_stacked, wr_labels=wr.labels,
        **{f'w_{i}': v.numpy() for i, v in enumerate(state.values())},
    )  # fmt: skip


if __name__ == '__main__':
    main(sys.argv[1])
