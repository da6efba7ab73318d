"""Cost of attention capture on the SD v1.4-size UNet at 512 x 512 (64 x 64 latent), random weights.

Runs, in one invocation, a plain forward (diffusers' default fused processors) and a capturing forward
(`AttentionSpec.sd14()`: self maps at 64x64, cross maps at 32x32 and 16x16, 4 token columns, last up-block
features), each in a fresh subprocess so that peak memory is measured cleanly, and prints time and peak-memory
ratios against the plain forward plus the bytes of stored maps. On CUDA the peak is
`torch.cuda.max_memory_allocated`; on the CPU it is the process's peak RSS above its RSS after the model was built.

    python benchmarks/attention.py [--device cpu|cuda] [--batch 1] [--repeats 2] [--dtype float32|float16]
"""
import argparse, json, os, resource, subprocess, sys, time

def _rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024

def worker(mode, device, batch, repeats, dtype):
    import torch
    from microscopy_toolkit.models.sd import sd14_unet
    from microscopy_toolkit.matching.attention import AttentionSpec, capture_attention
    dt = dict(float32=torch.float32, float16=torch.float16)[dtype]
    unet = sd14_unet(device, seed=0, dtype=dt)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, 64, 64, generator=g).to(device, dt)
    c = torch.randn(batch, 77, 768, generator=g).to(device, dt)
    t = torch.full((batch,), 20, device=device)
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    def run():
        if mode == 'plain':
            unet(x, t, c); return 0
        with capture_attention(unet, AttentionSpec.sd14(), tokens=[1, 2, 3, 4], latent_size=64, features=True) as st:
            unet(x, t, c)
        maps = st.maps(); maps.features = st.features
        return maps.nbytes
    with torch.no_grad():
        run(); sync()                                # warm-up
        base = _rss_mib()
        if device == 'cuda': torch.cuda.reset_peak_memory_stats(); base_cuda = torch.cuda.memory_allocated() / 2**20
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter(); nbytes = run(); sync(); times.append(time.perf_counter() - t0)
    if device == 'cuda': peak = torch.cuda.max_memory_allocated() / 2**20 - base_cuda
    else: peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    print(json.dumps(dict(mode=mode, seconds=min(times), peak_extra_mib=peak, stored_bytes=nbytes)))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--device', default='cpu'); ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=2); ap.add_argument('--dtype', default='float32')
    ap.add_argument('--worker', default=None); a = ap.parse_args()
    if a.worker: return worker(a.worker, a.device, a.batch, a.repeats, a.dtype)
    res = {}
    for mode in ('plain', 'capture'):
        out = subprocess.run([sys.executable, __file__, '--worker', mode, '--device', a.device, '--batch', str(a.batch),
                              '--repeats', str(a.repeats), '--dtype', a.dtype], capture_output=True, text=True)
        if out.returncode: sys.exit(out.stderr)
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    p, c = res['plain'], res['capture']
    print(f"SD v1.4 UNet, 512x512 image (64x64 latent), batch {a.batch}, {a.device}, {a.dtype}; note: on the CPU peak is "
          "the worst of warm-up and timed runs (ru_maxrss)" if a.device == 'cpu' else f"SD v1.4 UNet, 512x512, batch {a.batch}, {a.device}, {a.dtype}")
    print(f"{'':10s}{'time (s)':>10s}{'peak extra (MiB)':>18s}")
    print(f"{'plain':10s}{p['seconds']:10.2f}{p['peak_extra_mib']:18.0f}")
    print(f"{'capture':10s}{c['seconds']:10.2f}{c['peak_extra_mib']:18.0f}")
    print(f"capture / plain: time {c['seconds']/p['seconds']:.2f}x, peak memory {c['peak_extra_mib']/max(p['peak_extra_mib'],1):.2f}x "
          f"(+{c['peak_extra_mib']-p['peak_extra_mib']:.0f} MiB)")
    print(f"stored maps: {c['stored_bytes']/2**20:.1f} MiB per batch of {a.batch} "
          f"(4 heads x 5 self layers at 64x64 kept as the reference does: {a.batch*4*5*4096*4096*4/2**20:.0f} MiB)")

if __name__ == '__main__': main()
