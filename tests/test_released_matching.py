"""`mtk match segment|count` without `-c`: the released MicroscopyMatching models found through the weights resolver.

A weights folder laid out as `MTK_WEIGHTS_DIR` expects (the authors' file names) holds small random checkpoints of the
released classes saved in the authors' format (their key names), a tiny SD saved as a diffusers folder in place of
SD v1.4, and a task-token vector; the heads take their sizes from that SD. The CLI's outputs are checked against the
library on the same files, and offline with the folder empty the run stops at once with one error naming every file.

Random weights give no cell at the authors' decoding thresholds, so the segmentation checkpoint's readout (the ViT's
last 1x1 convolution) is set to a known answer: zero weights and a bias that, in every 8 x 8 output block, is Cellpose's
flow field of one 8 x 8 square cell (x 5, the network's scale) and cell probability 4. The tiles (32 px, at multiples
of 8 px) then blend into a grid of 64 square cells at the 64 px processing size, which must come out of the CLI as
labels, resized to each image's size by nearest neighbour.
"""
import contextlib
import io
import time

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image
from conftest import same_partition

from microscopy_toolkit.cli import main
from microscopy_toolkit.matching.cellpose import resize_native
from microscopy_toolkit.matching.released import (ReleasedCounting, ReleasedMatching, ReleasedSegmentation,
                                                  to_author_keys)
from microscopy_toolkit.models.sd import load_tiny_sd, save_sd
from microscopy_toolkit.synthetic.cells import cell_image

VIT = dict(embed_dim=32, depth=2, heads=2, global_attn=(1,), window=2, img_size=64, patch=16, ps=8, bsize=32)
ENC = dict(dim=16, layers=1, steps=2, mlp_factor=2, grid=8, feat_channels=32)


GRID = (np.arange(64)[:, None] // 8 * 8 + np.arange(64)[None] // 8 + 1).astype(np.uint16)  # 64 squares of 8 px


def square_cell_block() -> np.ndarray:
    "`(3, 8, 8)` float32: Cellpose's flows (dY, dX) of an 8 x 8 square cell, x 5, and cell probability 4."
    from cellpose.dynamics import masks_to_flows_gpu

    flows = np.asarray(masks_to_flows_gpu(GRID.astype(np.int32), device=torch.device('cpu'))[0])  # (mu, centres)
    return np.concatenate([5 * flows[:, 8:16, 8:16], np.full((1, 8, 8), 4.0)]).astype(np.float32)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    "A MTK_WEIGHTS_DIR with the released file names: tiny SD, task token, small seg and count checkpoints."
    w = tmp_path_factory.mktemp('weights')
    save_sd(load_tiny_sd(image_size=64), w / 'stable-diffusion-v1-4')
    torch.manual_seed(0)
    torch.save(torch.randn(32), w / 'mm_task_embed.pth')
    seg = ReleasedSegmentation(dict(encoder=ENC, projector=dict(dim=16, out=32, size=64), grid=32, vit=VIT))
    with torch.no_grad():  # the known answer: every 8 x 8 block of the output is one square cell
        seg.head.vit.out.weight.zero_()
        seg.head.vit.out.bias.copy_(torch.from_numpy(square_cell_block()).reshape(-1))
    torch.save(to_author_keys(seg.state_dict()), w / 'microscopy_matching_seg.pth')
    cnt = ReleasedCounting(dict(encoder=ENC, projector=dict(dim=16, out=32, size=64),
                                decoder=dict(feat_channels=32, grid=8)))
    torch.save(to_author_keys(cnt.state_dict()), w / 'microscopy_matching_cnt.pth')
    return w


@pytest.fixture
def images(tmp_path):
    "A 16-bit grey TIFF and an 8-bit RGB PNG of other sizes."
    grey = (cell_image(size=80, n_cells=6, seed=0)[0] * 60000).astype(np.uint16)[:, :72]
    tifffile.imwrite(tmp_path / 'grey.tif', grey)
    rgb = (cell_image(size=56, n_cells=4, seed=1)[0][..., None] * [255, 128, 30]).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    return {'grey': grey, 'rgb': rgb}


def _mtk(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def test_segment_and_count_with_the_released_models(weights, images, tmp_path, monkeypatch):
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(weights))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    rc, out, err = _mtk('match', 'segment', tmp_path / 'grey.tif', tmp_path / 'rgb.png', '-o', tmp_path / 'seg')
    assert rc == 0, err
    rm = ReleasedMatching.from_weights('segment')
    for name, img in images.items():
        labels = tifffile.imread(tmp_path / 'seg' / f'{name}_labels.tif')
        assert labels.shape == img.shape[:2]
        np.testing.assert_array_equal(labels, rm.segment(img)[0])
        np.testing.assert_array_equal(np.unique(labels), np.arange(1, 65))  # the 64 cells (they tile the image)
        assert same_partition(labels, resize_native(GRID, img.shape[:2], nearest=True))
    rc, out, err = _mtk('match', 'count', tmp_path / 'grey.tif', tmp_path / 'rgb.png', '-o', tmp_path / 'cnt',
                        '--box', '10,10,30,30')
    assert rc == 0, err
    counts = pd.read_csv(tmp_path / 'cnt' / 'counts.csv').set_index('file')['count']
    rc_model = ReleasedMatching.from_weights('count')
    for name, img in images.items():
        c, dens = rc_model.count(img, [[10, 10, 30, 30]])
        np.testing.assert_allclose(counts[name], c[0], atol=6e-4)  # the CSV keeps 3 decimals
        np.testing.assert_allclose(tifffile.imread(tmp_path / 'cnt' / f'{name}_density.tif'), dens[0], rtol=1e-4,
                                   atol=1e-7)
        assert abs(c[0]) > 1e-6


def test_offline_without_weights_one_error_names_every_file(tmp_path, monkeypatch, images):
    monkeypatch.setenv('MTK_WEIGHTS_DIR', str(tmp_path / 'empty'))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'hub'))
    t0 = time.perf_counter()
    rc, out, err = _mtk('match', 'segment', tmp_path / 'grey.tif', '-o', tmp_path / 'seg')
    assert rc == 2 and time.perf_counter() - t0 < 20
    assert err.count('mtk: error: ') == 1
    for f in ('microscopy_matching_seg.pth', 'mm_task_embed.pth', 'stable-diffusion-v1-4', 'MTK_WEIGHTS_DIR'):
        assert f in err, (f, err)
    assert not (tmp_path / 'seg').exists() or not any((tmp_path / 'seg').rglob('*.tif'))
