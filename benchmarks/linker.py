"""Linking throughput: the library's sparse greedy and sparse LAP linkers against straightforward dense implementations
of the same rules, run in the same process on the same scores, and laptrack (a dev requirement) as an outside reference.

Data: random centroids (1,000 per frame by default) taking a small random walk over 100 frames, no images; association
scores are distance scores `1 - d / max_distance` from a k-d tree. Slow baselines run on fewer frame pairs and are
reported per frame pair.

    python benchmarks/linker.py            # 1,000 objects x 100 frames (about a minute on 2 cores)
    python benchmarks/linker.py --quick    # 300 objects x 20 frames, for a smoke run
"""
import argparse, time

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from microscopy_toolkit.tracking.linker import distance_scores, link_greedy, link_optimal

MAX_DISTANCE, THRESHOLD = 15.0, 0.3
APPEAR, DISAPPEAR, DIVISION = 2.0, 2.0, 0.25


def random_walk(n_objects, n_frames, size, step, seed=0):
    "Centroids (n_frames, n_objects, 2) of points taking a Gaussian random walk (reflected at the borders)."
    rng = np.random.default_rng(seed)
    pts = [rng.uniform(0, size, (n_objects, 2))]
    for _ in range(n_frames - 1):
        nxt = np.abs(pts[-1] + rng.normal(0, step, (n_objects, 2)))
        pts.append(np.where(nxt > size, 2 * size - nxt, nxt))
    return np.stack(pts)


def naive_greedy(points_t, points_t1, threshold=THRESHOLD, max_children=2):
    "Trackastra's greedy rule on the dense score matrix: all n x m scores, one argsort, a Python loop down to the threshold."
    d = cdist(points_t, points_t1)
    s = np.clip(1 - d / MAX_DISTANCE, 0, None)
    order = np.lexsort((np.tile(np.arange(s.shape[1]), s.shape[0]), np.repeat(np.arange(s.shape[0]), s.shape[1]), -s.ravel()))
    has_parent, n_children, links = set(), {}, []
    for k in order:
        if s.flat[k] < threshold or s.flat[k] <= 0: break
        i, j = divmod(int(k), s.shape[1])
        if j in has_parent or n_children.get(i, 0) >= max_children: continue
        has_parent.add(j); n_children[i] = n_children.get(i, 0) + 1; links.append((i, j))
    return sorted(links)


def dense_lap(points_t, points_t1, forbidden=1e6):
    "The same augmented LAP without sparsification: every parent-child pair is an entry (far pairs get a large cost)."
    n, m = len(points_t), len(points_t1)
    s = np.clip(1 - cdist(points_t, points_t1) / MAX_DISTANCE, 0, None)
    link = np.where(s >= THRESHOLD, -np.log(np.maximum(s, 1e-300)), forbidden)
    big = np.full((2 * n + m, m + 2 * n), forbidden)
    big[:n, :m] = link; big[n:2 * n, :m] = link + DIVISION
    big[np.arange(n), m + np.arange(n)] = DISAPPEAR; big[n + np.arange(n), m + n + np.arange(n)] = 0
    big[2 * n + np.arange(m), np.arange(m)] = APPEAR
    big[2 * n:, m:m + n] = np.where(link.T < forbidden, 0, forbidden); big[2 * n:, m + n:] = big[2 * n:, m:m + n]
    r, c = linear_sum_assignment(big)
    keep = (r < 2 * n) & (c < m)
    return sorted(zip((r[keep] % n).tolist(), c[keep].tolist())), big[r, c].sum()


def objective(links, scores):
    "The LAP objective of a set of links on one frame pair."
    n, m = scores.shape
    p, c = np.array(links, dtype=int).reshape(-1, 2).T
    kids, parents = np.bincount(p, minlength=n), np.bincount(c, minlength=m)
    return (-np.log(np.asarray(scores[p, c]).ravel()).sum() + APPEAR * (parents == 0).sum() + DISAPPEAR * (kids == 0).sum()
            + DIVISION * np.maximum(kids - 1, 0).sum())


def as_links(edges, t):
    e = edges[edges.frame_parent == t]
    return sorted(zip((e.label_parent - 1).tolist(), (e.label_child - 1).tolist()))


def timed(f):
    t0 = time.perf_counter(); out = f(); return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    n_obj, n_frames, n_slow = (300, 20, 3) if a.quick else (1000, 100, 5)
    size = np.sqrt(n_obj) * 32.0                                       # ~32 px between neighbours, like a sparse culture
    pts = random_walk(n_obj, n_frames, size, step=2.0)
    pairs = n_frames - 1
    scores, t_scores = timed(lambda: [distance_scores(pts[t], pts[t + 1], MAX_DISTANCE) for t in range(pairs)])
    nnz = np.mean([s.nnz for s in scores])
    print(f"{n_obj} objects x {n_frames} frames, field {size:.0f} px, max_distance {MAX_DISTANCE:g}: "
          f"{nnz:.0f} candidate pairs per frame pair (dense would be {n_obj * n_obj:,})")
    print(f"  distance scores (cKDTree)                 {t_scores / pairs * 1e3:8.2f} ms/frame")

    greedy, t_greedy = timed(lambda: link_greedy(scores, THRESHOLD))
    optimal, t_opt = timed(lambda: link_optimal(scores, APPEAR, DISAPPEAR, DIVISION, THRESHOLD))
    opt_dense_lib, t_opt_dense_lib = timed(lambda: link_optimal(scores[:n_slow], APPEAR, DISAPPEAR, DIVISION, THRESHOLD, solver='dense'))
    naive, t_naive = timed(lambda: [naive_greedy(pts[t], pts[t + 1]) for t in range(n_slow)])
    dense, t_dense = timed(lambda: [dense_lap(pts[t], pts[t + 1]) for t in range(n_slow)])

    for t in range(n_slow):                                             # same answers as the baselines
        assert as_links(greedy, t) == naive[t], f'greedy differs from the dense baseline at frame {t}'
        s = scores[t].toarray()
        assert abs(objective(as_links(optimal, t), s) - objective(dense[t][0], s)) < 1e-6, f'LAP objective differs at frame {t}'
        assert abs(objective(as_links(opt_dense_lib, t), s) - objective(dense[t][0], s)) < 1e-6

    g, o = t_greedy / pairs * 1e3, t_opt / pairs * 1e3
    ng, dl, odl = t_naive / n_slow * 1e3, t_dense / n_slow * 1e3, t_opt_dense_lib / n_slow * 1e3
    print(f"  link_greedy (sparse, {pairs} pairs)           {g:8.2f} ms/frame   {len(greedy) / pairs:.0f} links/frame")
    print(f"  naive dense greedy ({n_slow} pairs)             {ng:8.2f} ms/frame   library speed-up x{ng / g:.0f}")
    print(f"  link_optimal (sparse LAPJV, {pairs} pairs)    {o:8.2f} ms/frame   {len(optimal) / pairs:.0f} links/frame")
    print(f"  link_optimal solver='dense' ({n_slow} pairs)     {odl:8.2f} ms/frame   sparse speed-up x{odl / o:.0f}")
    print(f"  full dense LAP, no sparsification ({n_slow} p.) {dl:8.2f} ms/frame   library speed-up x{dl / o:.0f}")
    shared = len(greedy.merge(optimal, on=['frame_parent', 'label_parent', 'frame_child', 'label_child']))
    print(f"  greedy and optimal share {shared / max(len(optimal), 1):.1%} of their links "
          f"(greedy divisions: {int((greedy.groupby(['frame_parent', 'label_parent']).size() > 1).sum())}, "
          f"optimal: {int((optimal.groupby(['frame_parent', 'label_parent']).size() > 1).sum())})")

    from laptrack import LapTrack          # a dev requirement: the outside reference
    n_lt = min(pairs, 20)
    lt = LapTrack(metric='euclidean', cutoff=MAX_DISTANCE, gap_closing_cutoff=False, splitting_cutoff=False, merging_cutoff=False)
    graph, t_lt = timed(lambda: lt.predict([pts[t] for t in range(n_lt + 1)]))
    lt_ms = t_lt / n_lt * 1e3
    import laptrack
    print(f"  laptrack {laptrack.__version__} frame-to-frame LAP, no splitting ({n_lt} pairs) "
          f"{lt_ms:8.2f} ms/frame   {graph.number_of_edges() / n_lt:.0f} links/frame   link_optimal speed-up x{lt_ms / o:.1f}")


if __name__ == '__main__':
    main()
