"""Plate QC throughput and memory: images per second of `qc.run.measure_plate` run serially (Dask 'sync'), on
Dask's threads and on a 2-worker LocalCluster, against a per-image loop over CellProfiler's own functions (centrosome,
via tools/qc_cellprofiler_fixture.py) run in its own environment on the same files; and the peak memory of measuring a
1,536-image plate against a 96-image plate (each in a fresh process: lazy reads keep it flat).

    python benchmarks/qc.py                                     # 96- and 1,536-image plates of 128 x 128 fields
    python benchmarks/qc.py --quick                             # 24- and 96-image plates of 64 x 64 fields
    python benchmarks/qc.py --cp-python /tmp/cp/bin/python      # also time CellProfiler's functions (centrosome, NumPy<2)
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALES = (2, 5, 20)  # the scales of the CellProfiler harness, so both sides compute the same measures

CHILD = """
import json, resource, sys, time, tracemalloc
from microscopy_toolkit.qc.plate import plate_layout
from microscopy_toolkit.qc.run import measure_plate
lay = plate_layout(sys.argv[1])
rss0 = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
tracemalloc.start()
df = measure_plate(lay, sys.argv[2], scales=(2, 5, 20), scheduler='sync', show_progress=False)
peak = tracemalloc.get_traced_memory()[1] / 2**20
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({'images': len(lay), 'traced_peak_mb': peak, 'rss_growth_mb': rss - rss0, 'peak_rss_mb': rss}))
"""

CP_CHILD = """
import json, sys, time, glob
sys.path.insert(0, sys.argv[2])
import tifffile, qc_cellprofiler_fixture as h
files = sorted(glob.glob(sys.argv[1] + '/*.tif'))
t0 = time.perf_counter()
for f in files:
    h.measures(tifffile.imread(f))
print(json.dumps({'images': len(files), 'seconds': time.perf_counter() - t0}))
"""


def child(code, *args, python=sys.executable):
    out = subprocess.run([python, '-c', code, *map(str, args)], capture_output=True, text=True, check=True,
                         env={'PYTHONPATH': str(ROOT), 'MTK_PROGRESS': '0', 'PATH': '/usr/bin:/bin'})
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_run(layout, out, **kw):
    from microscopy_toolkit.qc.run import measure_plate

    t0 = time.perf_counter()
    measure_plate(layout, out, scales=SCALES, show_progress=False, **kw)
    return len(layout) / (time.perf_counter() - t0)


def library_loop(layout):
    "The measures alone, in a plain loop in this process: the same work as the CellProfiler loop."
    import tifffile
    from microscopy_toolkit.qc.measures import image_quality

    t0 = time.perf_counter()
    for p in layout['path']:
        image_quality(tifffile.imread(p), SCALES)
    return len(layout) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--cp-python', default=None, help="python of a venv with centrosome and NumPy<2")
    a = ap.parse_args()
    from microscopy_toolkit.qc.plate import plate_layout, write_synthetic_plate

    size = 64 if a.quick else 128
    small, large = ((2, 3, 2, 2), (4, 6, 2, 2)) if a.quick else ((8, 12, 1, 1), (16, 24, 2, 2))  # rows, cols, sites, ch
    res = {'field_size': size}
    with tempfile.TemporaryDirectory() as d:
        for name, (r, c, s, ch) in (('small', small), ('large', large)):
            write_synthetic_plate(f'{d}/{name}', rows=r, cols=c, sites=s, channels=ch, size=size, seed=0)
        timed_run(plate_layout(f'{d}/small'), f'{d}/warm', scheduler='sync')  # imports and first calls, untimed
        lay = plate_layout(f'{d}/large')
        res['images_large'] = len(lay)
        res['serial_img_s'] = timed_run(lay, f'{d}/o1', scheduler='sync')
        res['threads_img_s'] = timed_run(lay, f'{d}/o2')
        res['library_loop_img_s'] = library_loop(lay)
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cl, Client(cl) as client:
            client.run(lambda: __import__('microscopy_toolkit.qc.run'))  # workers import the library before timing
            res['localcluster_start_s'] = time.perf_counter() - t0
            res['localcluster2_img_s'] = timed_run(lay, f'{d}/o3', scheduler=cl.scheduler_address, batch=128)
        mem = {n: child(CHILD, f'{d}/{n}', f'{d}/m_{n}') for n in ('small', 'large')}
        res['images_small'] = mem['small']['images']
        for k in ('traced_peak_mb', 'rss_growth_mb', 'peak_rss_mb'):
            res[f'{k}_small'], res[f'{k}_large'] = mem['small'][k], mem['large'][k]
        res['traced_peak_ratio_large_over_small'] = res['traced_peak_mb_large'] / res['traced_peak_mb_small']
        if a.cp_python:
            cp = child(CP_CHILD, f'{d}/large', ROOT / 'tools', python=a.cp_python)
            res['cellprofiler_loop_img_s'] = cp['images'] / cp['seconds']
            res['library_loop_over_cellprofiler'] = res['library_loop_img_s'] / res['cellprofiler_loop_img_s']
    res['localcluster2_over_serial'] = res['localcluster2_img_s'] / res['serial_img_s']
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}, indent=1))


if __name__ == '__main__':
    main()
