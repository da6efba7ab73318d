"Papermill smoke runs of every tutorial through `mtk quickstart`, the README's main job (run once, checked by several tests)."
import json
from pathlib import Path

import nbformat
import pytest

from conftest import run_mtk


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp('quickstart')/'out'
    res = run_mtk('quickstart', '--smoke', '-o', out, timeout=2400)
    return out, res


def test_quickstart_runs_every_tutorial(quickstart, root):
    out, res = quickstart
    tutorials = sorted(p.stem for p in (root/'tutorials').glob('*.ipynb'))
    assert tutorials, 'no tutorials found'
    metrics = json.loads((out/'metrics.json').read_text())
    assert sorted(metrics) == tutorials
    for t in tutorials:
        nb = nbformat.read(out/f'{t}.ipynb', as_version=4)
        errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.get('output_type') == 'error']
        assert not errors, f'{t}: {errors}'
        assert any((out/t).glob('*.png')), f'{t} wrote no figure'
        assert f"wrote {out/f'{t}.ipynb'}" in res.stdout
    assert 'everything is in' in res.stdout


def test_focus_tutorial_reproduces_stain_dependence(quickstart):
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['01_stain_dependent_focus']
    srcc = m['srcc_per_stain']
    assert len(srcc) >= 4 and all(v < 0 for v in srcc.values())          # SF falls with rank for every stain
    assert max(srcc.values()) - min(srcc.values()) > 0.1                   # ... but not equally: the stains differ
    assert m['smoke'] is True


def test_quickstart_only_and_bad_folder(tmp_path):
    res = run_mtk('quickstart', '--only', 'no_such_tutorial', '-o', tmp_path, check=False)
    assert res.returncode == 2 and 'no tutorial notebooks' in res.stderr
