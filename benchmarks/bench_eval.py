"""Closed-VQA evaluation throughput: `bench.evaluate.evaluate` (decode, preprocess, encode each image once, each distinct
option text once, score all items) against the bare image encoder on already-preprocessed tensors, and against a
naive per-item loop that re-encodes the image and the option texts for every question; all in the same process.

    python benchmarks/bench_eval.py                 # tiny CLIP and ViT-B-32 (random weights), 96 rows x 7 tasks
    python benchmarks/bench_eval.py --quick         # tiny only, fewer rows
"""
import argparse, os, time, warnings

os.environ.setdefault('MTK_PROGRESS', '0')
import numpy as np
import torch

from microscopy_toolkit.bench.data import ubench_sample, task_items, TASKS
from microscopy_toolkit.bench.evaluate import evaluate
from microscopy_toolkit.models.clip import load_contrastive, ContrastiveModel


def timed(f):
    t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out


@torch.inference_mode()
def bare_encoder(cm: ContrastiveModel, pixels: torch.Tensor, batch_size: int) -> None:
    for i in range(0, len(pixels), batch_size): cm.model.encode_image(pixels[i:i + batch_size])


@torch.inference_mode()
def naive_loop(cm: ContrastiveModel, ds, tasks) -> list[int]:
    "What a first implementation does: for every item, encode its image and its option texts, then take the arg-max."
    preds = []
    for t in tasks:
        for it in task_items(ds, t, images=True):
            img = torch.nn.functional.normalize(cm.model.encode_image(cm._pixels([it['image']])), dim=-1)
            txt = torch.nn.functional.normalize(cm.model.encode_text(cm.tokenizer(it['texts'])), dim=-1)
            preds.append(int((img @ txt.T).argmax()))
    return preds


def run(spec: str, rows_per_dataset: int, image_size: int, batch_size: int, naive_rows: int):
    torch.set_num_threads(os.cpu_count() or 1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        cm = load_contrastive(spec, device='cpu')
    ds = ubench_sample(n_per_dataset=rows_per_dataset, seed=0, image_size=image_size)
    n_items = sum(len(task_items(ds, t, images=False)) for t in TASKS)
    pixels = cm._pixels(ds['image'])                       # preprocessing done outside the bare-encoder timing
    bare_encoder(cm, pixels[:batch_size], batch_size)      # warm-up
    t_bare, _ = timed(lambda: bare_encoder(cm, pixels, batch_size))
    cm.clear_cache()
    t_eval, res = timed(lambda: evaluate(cm, ds, batch_size=batch_size, n_resamples=1000, show_progress=False))
    sub = ds.select(range(min(naive_rows, len(ds))))
    t_naive, naive = timed(lambda: naive_loop(cm, sub, TASKS))
    n_naive_items = len(naive)
    # the naive loop must agree with evaluate on the rows it covered
    ours = evaluate(cm, sub, n_resamples=1000, show_progress=False).items.pred_idx.tolist()
    assert ours == naive, 'naive loop and evaluate disagree'
    n = len(ds)
    print(f"{spec:>10}: {n} images, {n_items} items, {res.info['n_texts']} distinct option texts")
    print(f"    bare image encoder (preprocessed tensors): {n / t_bare:8.1f} images/s")
    print(f"    evaluate (decode + preprocess + images + texts + scoring): {n / t_eval:8.1f} images/s = {t_bare / t_eval:.2f}x the bare encoder, "
          f"{n_items / t_eval:.1f} items/s")
    print(f"    naive per-item loop: {n_naive_items / t_naive:8.1f} items/s -> evaluate is {(n_items / t_eval) / (n_naive_items / t_naive):.1f}x faster per item")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    if a.quick: run('tiny:0', 16, 64, 64, 12)
    else:
        run('tiny:0', 96, 64, 64, 48)
        run('ViT-B-32', 32, 224, 32, 12)
