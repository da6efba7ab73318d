"""Fine-tuning the released segmentation architecture (`matching.finetune_seg`) long enough to see the masks improve:
Cellpose's loss on a fixed augmented batch and the AP at IoU 0.5 of `released_segment` on held-out images, before
and after `fit`, with the CPU time of the run. Tiny model of the released classes (random "released" weights, tiny
SD at 64 px, Cellpose-SAM transformer with 32 px tiles), synthetic cells; not a CI test (about a minute on 2 cores).

    python benchmarks/finetune_seg.py                      # 8 training images, 40 epochs, default parts
    python benchmarks/finetune_seg.py --parts features readout vit --epochs 20
"""
import argparse, copy, tempfile, time
from pathlib import Path

import numpy as np
import torch

from microscopy_toolkit.matching.data import synthetic_segmentation_set
from microscopy_toolkit.matching.finetune_seg import ReleasedSegFineTune, flow_targets
from microscopy_toolkit.matching.model import Matcher
from microscopy_toolkit.matching.released import ReleasedMatching, ReleasedSegmentation, released_segment
from microscopy_toolkit.matching.train import fit
from microscopy_toolkit.metrics import average_precision
from microscopy_toolkit.models.sd import load_tiny_sd

SMALL_VIT = dict(embed_dim=32, depth=2, heads=2, global_attn=(1,), window=2, img_size=64, patch=16, ps=8, bsize=32)
SMALL_SEG = dict(encoder=dict(dim=16, heads=2, layers=1, steps=2, mlp_factor=2, grid=8, feat_channels=32),
                 projector=dict(dim=16, out=32, size=64), grid=32, vit=SMALL_VIT)  # fmt: skip


def ap50(model, matcher, samples):
    "Mean AP at IoU 0.5 of `released_segment` over `samples`."
    masks = released_segment(model, matcher, [s['image'] for s in samples])
    return float(np.mean([average_precision(s['labels'], m, [0.5])[0][0] for s, m in zip(samples, masks)]))


def probe_loss(ft, samples, draws=4):
    "Cellpose's loss on one fixed draw of augmented tiles of `samples` (each `draws` times)."
    (a, c), _ = ft.inputs([s['image'] for s in samples])
    t = torch.stack([flow_targets(s['labels'], ft.image_size) for s in samples])
    np.random.seed(0)
    with torch.no_grad():
        return ft.seg_head.fit_loss(a.repeat(draws, 1, 1, 1), c.repeat(draws, 1, 1, 1), t.repeat(draws, 1, 1, 1)).item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--train', type=int, default=8)
    p.add_argument('--val', type=int, default=4)
    p.add_argument('--epochs', type=int, default=40)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--parts', nargs='+', default=['features', 'readout'])
    args = p.parse_args()
    torch.manual_seed(0)
    base = ReleasedSegmentation(SMALL_SEG).eval()
    matcher = Matcher(load_tiny_sd(image_size=64))
    data = synthetic_segmentation_set(args.train + args.val, size=64, seed=0)
    train, val = data[: args.train], data[args.train :]
    ft = ReleasedSegFineTune(ReleasedMatching('segment', copy.deepcopy(base), matcher), args.parts)
    before = dict(loss=probe_loss(ft, train), ap50=ap50(base, matcher, val))
    t0, c0 = time.time(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        h = fit(ft, train, val, epochs=args.epochs, lr=args.lr, batch_size=2, patience=args.epochs, ckpt_dir=d,
                verbose=False)  # fmt: skip
        ck = torch.load(Path(d) / 'last.pt', weights_only=False)['model']
    wall, cpu = time.time() - t0, time.process_time() - c0
    best = ap50(ft.model, matcher, val)  # fit leaves the weights of the best validation AP
    ft.load_state_dict(ck)
    after = dict(loss=probe_loss(ft, train), ap50=ap50(ft.model, matcher, val))
    print(h[['epoch', 'loss', 'val_ap50']].to_string(index=False))
    print(f"parts {args.parts}: {sum(v.numel() for v in ck.values())} trained values, {args.epochs} epochs of "
          f"{len(train)} images, {wall:.0f} s wall, {cpu:.0f} CPU-s")  # fmt: skip
    print(f"fixed-batch loss {before['loss']:.3f} -> {after['loss']:.3f}; validation AP50 {before['ap50']:.3f} -> "
          f"{after['ap50']:.3f} (last epoch), {best:.3f} (best epoch, what fit keeps)")  # fmt: skip


if __name__ == '__main__':
    main()
