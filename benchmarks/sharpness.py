"""Spatial-frequency throughput: the library's blocked NumPy path and its torch path against a straightforward NumPy
implementation of the same formula, run in the same process, beside the machine's memory-bandwidth bound.

    python benchmarks/sharpness.py            # 8 x 2048x2048 float32 batch and a 32 x 1024x1024 stack
    python benchmarks/sharpness.py --quick    # small sizes, for a smoke run
"""
import argparse, time, tracemalloc

import numpy as np
import torch

from microscopy_toolkit.focus.sharpness import spatial_frequency


def naive_sf(batch):
    "Eq. 11 written the obvious way: per image, np.diff along each axis, square, mean, sqrt."
    out = []
    for img in batch.reshape(-1, *batch.shape[-2:]):
        rf = np.sqrt(np.mean(np.diff(img, axis=0) ** 2))
        cf = np.sqrt(np.mean(np.diff(img, axis=1) ** 2))
        out.append(np.sqrt(rf ** 2 + cf ** 2))
    return np.array(out).reshape(batch.shape[:-2])


def best_time(f, repeats=3):
    best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter(); f(); best = min(best, time.perf_counter() - t0)
    return best


def peak_extra_bytes(f):
    tracemalloc.start(); f(); _, peak = tracemalloc.get_traced_memory(); tracemalloc.stop()
    return peak


def bandwidth_gbs(nbytes=1 << 28):
    "Read bandwidth: a float32 sum over a large array (the minimum work SF must do is read every pixel once)."
    a = np.ones(nbytes // 4, np.float32)
    t = best_time(lambda: a.sum(dtype=np.float64))
    return nbytes / t / 1e9


def report(name, data, repeats):
    mp = data.size / 1e6
    t_naive = best_time(lambda: naive_sf(data), repeats)
    t_lib = best_time(lambda: spatial_frequency(data), repeats)
    tt = torch.from_numpy(data)
    t_torch = best_time(lambda: spatial_frequency(tt), repeats)
    np.testing.assert_allclose(spatial_frequency(data), naive_sf(data), rtol=1e-4)
    mem_naive, mem_lib = peak_extra_bytes(lambda: naive_sf(data)), peak_extra_bytes(lambda: spatial_frequency(data))
    print(f"\n{name}: {data.shape} float32, {mp:.0f} MP, {data.nbytes / 1e6:.0f} MB")
    print(f"  naive numpy (np.diff per image)  {mp / t_naive:8.1f} MP/s   peak extra memory {mem_naive / data.nbytes:5.2f} x input")
    print(f"  library numpy (blocked)          {mp / t_lib:8.1f} MP/s   peak extra memory {mem_lib / data.nbytes:5.2f} x input   speed-up x{t_naive / t_lib:.2f}")
    print(f"  library torch ({torch.get_num_threads()} threads, CPU)     {mp / t_torch:8.1f} MP/s   speed-up x{t_naive / t_torch:.2f}")
    return t_naive, t_lib, t_torch


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--quick', action='store_true'); a = ap.parse_args()
    rng = np.random.default_rng(0)
    batch = rng.random((2, 512, 512) if a.quick else (8, 2048, 2048), dtype=np.float32)
    stack = rng.random((32, 256, 256) if a.quick else (32, 1024, 1024), dtype=np.float32)
    bw = bandwidth_gbs(1 << 24 if a.quick else 1 << 28)
    print(f"memory read bandwidth (np.sum over a large float32 array): {bw:.1f} GB/s "
          f"-> SF bound {bw * 1e9 / 4 / 1e6:.0f} MP/s at 4 bytes per pixel read once")
    report('batch of images', batch, 2 if a.quick else 3)
    report('z-stack', stack, 2 if a.quick else 3)


if __name__ == '__main__':
    main()
