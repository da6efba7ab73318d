import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('MTK_PROGRESS', '0')


@pytest.fixture(scope='session')
def root() -> Path:
    return ROOT


def same_partition(a, b) -> bool:
    "Two label images describe the same objects (label numbers may differ)."
    import numpy as np

    if a.shape != b.shape or ((a > 0) != (b > 0)).any():
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def run_mtk(*args, cwd=None, check=True, timeout=900):
    "Run the installed `mtk` command and return the CompletedProcess (stdout+stderr captured as text)."
    exe = Path(sys.executable).with_name('mtk')
    cmd = [str(exe) if exe.exists() else 'mtk', *map(str, args)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def mtk_main(*args, check=True):
    """`mtk ARGS` in this process (`cli.main`: no interpreter, torch or model start-up per call), answered like `run_mtk`:
    `.returncode` (argparse's exits included), `.stdout`, `.stderr`."""
    import contextlib, io
    from types import SimpleNamespace
    from microscopy_toolkit.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:                       # argparse: --help, --version, usage errors
            rc = e.code if isinstance(e.code, int) else int(e.code is not None)
    res = SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())
    if check and rc != 0:
        raise AssertionError(f"mtk {' '.join(map(str, args))} failed ({rc}):\n{res.stdout}\n{res.stderr}")
    return res


# `pytest -n 2 --dist loadgroup` (the README's test command) keeps each `xdist_group` on one worker and hands out the
# groups largest first, then single tests in collection order. The wheel test is one test but minutes long (a fresh
# venv, mostly waiting on pip), so it is collected first: it starts at once, beside the quickstart group, instead of last.
SLOW_FIRST = ('test_wheel.py',)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)     # stable: the order within each group is kept
