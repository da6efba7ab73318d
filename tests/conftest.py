import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('MTK_PROGRESS', '0')


@pytest.fixture(scope='session')
def root() -> Path:
    return ROOT


def run_mtk(*args, cwd=None, check=True, timeout=900):
    "Run the installed `mtk` command and return the CompletedProcess (stdout+stderr captured as text)."
    exe = Path(sys.executable).with_name('mtk')
    cmd = [str(exe) if exe.exists() else 'mtk', *map(str, args)]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


# `pytest -n 2 --dist loadgroup` (the README's test command) keeps each `xdist_group` on one worker and hands out the
# groups largest first, then single tests in collection order. The wheel test is one test but minutes long (a fresh
# venv, mostly waiting on pip), so it is collected first: it starts at once, beside the quickstart group, instead of last.
SLOW_FIRST = ('test_wheel.py',)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)     # stable: the order within each group is kept
