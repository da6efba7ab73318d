"""The authors' Cellpose dynamics (MicroscopyMatching `models/seg_post_model/dynamics.py`) against the `cellpose`
package's on the same flows: is `matching.cellpose.flows_to_masks` (cellpose's) what their segmentation decodes?

Not part of CI: it needs the authors' repository. Run

    python tools/cellpose_dynamics_check.py /path/to/MicroscopyMatching

with `cellpose` (and its dependencies fastremap, fill-voids, opencv) installed. Six synthetic label images (8-23
cells, 160-320 px); flows are Cellpose's own flows of the labels x 5 plus Gaussian noise (sd 0, 0.5, 1.0), the
cell probability +-4 plus noise (sd 0 or 1); both decoders use the authors' settings (niter 200, flow_threshold 0.4,
cellprob_threshold 0, min_size 15, max_size_fraction 0.4). Result 2026-12-02 (cellpose 4.2.1.1, numpy 2.4, torch
2.14 CPU): 0 differing pixels on all six, the same number of masks as cells.
"""

import sys

import numpy as np
import torch


def main(repo: str):
    sys.path.insert(0, repo)
    from models.seg_post_model import dynamics as theirs
    from cellpose import dynamics as cp
    from microscopy_toolkit.synthetic.cells import cell_image

    kw = dict(niter=200, cellprob_threshold=0.0, flow_threshold=0.4, min_size=15, max_size_fraction=0.4,
              resize=None, device=torch.device('cpu'))  # fmt: skip
    for seed in range(6):
        lab = cell_image(size=160 + 32 * seed, n_cells=8 + 3 * seed, seed=seed)[1].astype(np.int32)
        mu = cp.masks_to_flows_gpu(lab, device=torch.device('cpu'))[0]
        rng = np.random.default_rng(seed)
        dP = (5 * mu + rng.normal(0, 0.5 * (seed % 3), mu.shape)).astype(np.float32)
        prob = np.where(lab > 0, 4.0, -4.0) + rng.normal(0, 1.0 * (seed % 2), lab.shape)
        a = theirs.resize_and_compute_masks(dP, prob.astype(np.float32), **kw)
        b = cp.resize_and_compute_masks(dP, prob.astype(np.float32), **kw)
        print(f'image {seed}: {lab.max()} cells, theirs {a.max()} masks, cellpose {b.max()}, '
              f'{int((a != b).sum())} differing pixels')  # fmt: skip


if __name__ == '__main__':
    main(sys.argv[1])
