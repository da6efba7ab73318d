"""Closed-VQA evaluation throughput: `bench.evaluate.evaluate` (decode, preprocess, encode each image once, each distinct
option text once, score all items) against the bare image encoder on already-preprocessed tensors, and against a
naive per-item loop that re-encodes the image and the option texts for every question; all in the same process.

    python benchmarks/bench_eval.py                 # tiny CLIP (64 px) and ViT-B-16 (random weights, 224 px)
    python benchmarks/bench_eval.py --quick         # tiny only, fewer rows
    python benchmarks/bench_eval.py --vit-only      # only the ViT-B-16 row (2 torch threads unless --threads)
    python benchmarks/bench_eval.py --generative    # tiny random LLaVA on CPU: items/s one item at a time vs batched

Contrastive timings score one caption phrasing (variant=0), so the naive loop covers the same items. `evaluate` runs
serially (`workers=0`) and with 1 and 2 threads decoding the next image batches while the encoder runs; its
predictions must be identical in every setting (checked). The ratio against the bare encoder is the figure of merit
(issue 17: at least 0.9x), printed as wall-time ratios and, in brackets, as ratios of this process's CPU time (on a
machine shared with other jobs the wall clock also measures them; CPU time also counts the prefetch threads' decoding,
which the wall clock hides by overlapping it, so the two bracket the truth). Then the option texts' encoding: sorted by
length and cut to each batch's longest needed token (`models.clip.encode_text_trimmed`) against the full 77-token
context: the largest difference of the unit embeddings, identical predictions (asserted) and the time of each.
"""
import argparse, os, time, warnings

os.environ.setdefault('MTK_PROGRESS', '0')
import numpy as np
import torch

from microscopy_toolkit.bench.data import ubench_sample, task_items, TASKS
from microscopy_toolkit.bench.evaluate import evaluate
from microscopy_toolkit.bench.generative import evaluate_generative
from microscopy_toolkit.models.vlm import tiny_vlm
from microscopy_toolkit.models.clip import load_contrastive, ContrastiveModel, text_lengths


def timed(f):
    "Wall seconds, CPU seconds of this process (every thread), and f's result."
    w0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return time.perf_counter() - w0, time.process_time() - c0, out


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


def check_trimming(cm: ContrastiveModel, ds, batch_size: int, repeats: int) -> None:
    "Trimmed (length-sorted, cut to the longest needed token) against full-context text encoding: features, predictions, time."
    texts = list(dict.fromkeys(t for task in TASKS for it in task_items(ds, task, variant=0, images=False)
                               for t in it['texts']))
    ids = cm.tokenizer(texts)
    best = {}
    for trim in (True, False) * repeats:
        cm.clear_cache(); cm.trim_texts = trim
        w, c, emb = timed(lambda: cm.encode_texts(texts))
        best[trim] = (min(w, best.get(trim, (w, c, emb))[0]), min(c, best.get(trim, (w, c, emb))[1]), emb)
    diff = float((best[True][2] - best[False][2]).abs().max())
    preds = {}
    for trim in (True, False):
        cm.clear_cache(); cm.trim_texts = trim
        preds[trim] = evaluate(cm, ds, variant=0, batch_size=batch_size, n_resamples=1000,
                               show_progress=False).items.pred_idx.tolist()
    cm.clear_cache(); cm.trim_texts = True
    lengths = text_lengths(cm.model, ids)
    print(f"    text encoding: {len(texts)} option texts, {ids.shape[1]} token columns, needed {int(lengths.min())}-"
          f"{int(lengths.max())}; trimmed {best[True][0]:.2f} s wall / {best[True][1]:.2f} s CPU, full context "
          f"{best[False][0]:.2f} s / {best[False][1]:.2f} s CPU ({best[False][1] / best[True][1]:.1f}x); "
          f"max |trimmed - full| of the unit embeddings {diff:.1e}; predictions identical: {preds[True] == preds[False]}")
    assert diff < 1e-4 and preds[True] == preds[False], 'trimmed text encoding changed the features'
    return best[True][1], best[False][1]


def run(spec: str, rows_per_dataset: int, image_size: int, batch_size: int, naive_rows: int, workers=(0, 1, 2),
        repeats: int = 3, threads: int = 2):
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        cm = load_contrastive(spec, device='cpu')
    ds = ubench_sample(n_per_dataset=rows_per_dataset, seed=0, image_size=image_size)
    n_items = sum(len(task_items(ds, t, images=False)) for t in TASKS)
    pixels = cm._pixels(ds['image'])                       # preprocessing done outside the bare-encoder timing
    bare_encoder(cm, pixels[:batch_size], batch_size)      # warm-up
    # best of `repeats` interleaved runs: on a shared machine the minimum is the least disturbed measurement;
    # each timing is kept as wall seconds and as this process's CPU seconds (less sensitive to other processes)
    inf = (float('inf'), float('inf'))
    best = lambda a, b: (min(a[0], b[0]), min(a[1], b[1]))
    t_bare, t_eval, t_warm, res = inf, {w: inf for w in workers}, {w: inf for w in workers}, {}
    for _ in range(repeats):
        t_bare = best(t_bare, timed(lambda: bare_encoder(cm, pixels, batch_size))[:2])
        for w in workers:
            cm.clear_cache()  # cold: the option texts are encoded inside the timing
            *t, res[w] = timed(lambda: evaluate(cm, ds, variant=0, batch_size=batch_size, n_resamples=1000,
                                                show_progress=False, workers=w))
            t_eval[w] = best(t_eval[w], t)
            # warm: texts already cached, as for all but a few hundred of uBench's images (the image path alone)
            t_warm[w] = best(t_warm[w], timed(lambda: evaluate(cm, ds, variant=0, batch_size=batch_size,
                                                               n_resamples=1000, show_progress=False, workers=w))[:2])
    preds = {w: r.items.pred_idx.tolist() for w, r in res.items()}
    assert all(p == preds[workers[0]] for p in preds.values()), 'prefetching changed the predictions'
    sub = ds.select(range(min(naive_rows, len(ds))))
    t_naive, _, naive = timed(lambda: naive_loop(cm, sub, TASKS))
    n_naive_items = len(naive)
    # the naive loop (full-context texts) must agree with evaluate (trimmed texts) on the rows it covered
    ours = evaluate(cm, sub, variant=0, n_resamples=1000, show_progress=False).items.pred_idx.tolist()
    assert ours == naive, 'naive loop and evaluate disagree'
    n = len(ds)
    print(f"{spec:>10}: best of {repeats}, {n} images ({image_size} px), {n_items} items, "
          f"{res[workers[0]].info['n_texts']} distinct option texts, {torch.get_num_threads()} torch threads, "
          f"batch {batch_size}; ratios as wall time (CPU time of this process)")
    print(f"    bare image encoder (preprocessed tensors): {n / t_bare[0]:8.1f} images/s ({t_bare[1]:.2f} CPU s)")
    for w in workers:
        print(f"    evaluate, workers={w}: texts encoded inside: {n / t_eval[w][0]:7.1f} images/s = "
              f"{t_bare[0] / t_eval[w][0]:.2f}x ({t_bare[1] / t_eval[w][1]:.2f}x), {n_items / t_eval[w][0]:.1f} items/s"
              f"; texts cached: {n / t_warm[w][0]:7.1f} images/s = {t_bare[0] / t_warm[w][0]:.2f}x "
              f"({t_bare[1] / t_warm[w][1]:.2f}x)")
    print("    predictions identical for every workers setting: True")
    t_best = min(t[0] for t in t_eval.values())
    print(f"    naive per-item loop: {n_naive_items / t_naive:8.1f} items/s -> evaluate is "
          f"{(n_items / t_best) / (n_naive_items / t_naive):.1f}x faster per item")
    trim_cpu, full_cpu = check_trimming(cm, ds, batch_size, repeats)
    # a load-robust reading: the option texts' CPU work against the image encoder's, and the ratio evaluate would reach
    # if decoding overlapped fully and the texts ran in front of the images (what workers >= 1 does on free cores)
    print(f"    texts cost {full_cpu / t_bare[1]:.1%} of the image encoder's CPU work at full context "
          f"(-> {t_bare[1] / (t_bare[1] + full_cpu):.2f}x), {trim_cpu / t_bare[1]:.1%} trimmed "
          f"(-> {t_bare[1] / (t_bare[1] + trim_cpu):.2f}x)")


def run_generative(rows_per_dataset: int, batch_sizes=(1, 8, 32), max_new_tokens: int = 8, tasks=('stain', 'domain')):
    "Closed-VQA items/s of the tiny random LLaVA on the CPU, one item per generate call against batches."
    torch.set_num_threads(os.cpu_count() or 1)
    vlm = tiny_vlm(0, device='cpu')
    ds = ubench_sample(n_per_dataset=rows_per_dataset, seed=0)
    evaluate_generative(vlm, ds.select(range(2)), tasks=tasks, batch_size=2, max_new_tokens=2, show_progress=False,
                        n_resamples=1000)  # warm-up
    answers, rates = {}, {}
    for bs in batch_sizes:
        t, _, r = timed(lambda: evaluate_generative(vlm, ds, tasks=tasks, batch_size=bs, max_new_tokens=max_new_tokens,
                                                 show_progress=False, n_resamples=1000))
        answers[bs], rates[bs] = r.items.answer.tolist(), len(r.items) / t
    same = all(a == answers[batch_sizes[0]] for a in answers.values())
    print(f"tiny-vlm:0 on CPU ({torch.get_num_threads()} threads), {len(r.items)} items, {max_new_tokens} new tokens:")
    for bs in batch_sizes:
        print(f"    batch {bs:>3}: {rates[bs]:7.1f} items/s ({rates[bs] / rates[batch_sizes[0]]:.2f}x one at a time)")
    print(f"    batched answers identical to one-at-a-time answers: {same}")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true')
    ap.add_argument('--generative', action='store_true')
    ap.add_argument('--vit-only', action='store_true', help='only the ViT-B-16 row (the issue\'s figure of merit)')
    ap.add_argument('--threads', type=int, default=2, help='torch threads (default 2, the issue\'s setting)')
    ap.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2], help='evaluate prefetch threads to time')
    ap.add_argument('--repeats', type=int, default=3); a = ap.parse_args()
    kw = dict(workers=tuple(a.workers), repeats=a.repeats, threads=a.threads)
    if a.generative: run_generative(8)
    elif a.quick: run('tiny:0', 16, 64, 64, 12, **kw)
    else:
        if not a.vit_only: run('tiny:0', 96, 64, 64, 48, **kw)
        run('ViT-B-16', 16, 224, 16, 6, **kw)
