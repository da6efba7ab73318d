"""The fastcore rhythm of every notebook in `nbs/`, checked with tools/rhythm.py (the same checker the authors run).

For each notebook: median export cell at most 15 lines and none over 60; no line over 120 characters in a code cell;
one statement per line in exported code; no example cell that only imports (test-only imports go in a `#| hide` cell).
`python tools/rhythm.py check` lists the violations; `python tools/rhythm.py report` shows the numbers.
"""
import json, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import rhythm  # noqa: E402

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) > 20, NOTEBOOKS
    assert (rhythm.MAX_MEDIAN, rhythm.MAX_CELL, rhythm.MAX_LINE) == (15, 60, 120)


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_rhythm(nb):
    bad = rhythm.violations(nb)
    assert not bad, f"{nb.name} breaks the rhythm (fix it, then `python tools/rhythm.py check {nb.relative_to(ROOT)}`):\n" \
        + '\n'.join(bad)


def _cell(src, cell_type='code'):
    c = {'cell_type': cell_type, 'id': f'{abs(hash(src)) % 16**8:08x}', 'metadata': {}, 'source': src.splitlines(True)}
    if cell_type == 'code':
        c.update(execution_count=None, outputs=[])
    return c


def _write(path, cells):
    nb = {'cells': cells, 'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb, indent=1))
    return path


GOOD = [
    _cell('#| default_exp toy'),
    _cell('#| export\nimport math'),
    _cell('#| hide\nfrom fastcore.test import test_eq'),
    _cell('Halve a number: the one thing this toy module does.', 'markdown'),
    _cell('#| export\ndef half(x):\n    "Half of `x`."\n    return x / 2'),
    _cell('test_eq(half(3), 1.5)'),
]


def test_checker_passes_a_notebook_in_the_rhythm(tmp_path):
    nb = _write(tmp_path/'good.ipynb', GOOD)
    assert rhythm.violations(nb) == []
    r = rhythm.notebook_report(nb)
    assert r['sizes'] == [1, 3] and r['median'] == 2 and r['max'] == 3


def test_checker_fails_each_kind_of_bad_notebook(tmp_path):
    "Each rule, broken once in a copy of a good notebook, is reported (so the style test can fail)."
    long_body = '\n'.join(f'    y{i} = x + {i}' for i in range(61))
    cases = {
        'big cell': (_cell(f'#| export\ndef big(x):\n{long_body}\n    return x'), 'has 63 lines (at most 60)'),
        'wide line': (_cell('y = ' + ' + '.join(['1'] * 60)), 'a line of 241 characters'),
        'joined': (_cell('#| export\ndef f(x):\n    a = 1; b = 2\n    if x: return a\n    return b'), 'more than one statement'),
        'import only': (_cell('import os\nfrom pathlib import Path'), 'only imports'),
    }
    for name, (cell, message) in cases.items():
        nb = _write(tmp_path/f"{name.replace(' ', '_')}.ipynb", GOOD + [cell])
        bad = rhythm.violations(nb)
        assert bad and any(message in b for b in bad), (name, bad)
    # the median rule: five export cells of 16 lines each
    cells = [_cell('#| export\ndef f{k}(x):\n'.format(k=k) + '\n'.join(f'    x = x + {i}' for i in range(14))
                   + '\n    return x') for k in range(5)]
    nb = _write(tmp_path/'median.ipynb', GOOD[:3] + cells)
    assert rhythm.notebook_report(nb)['median'] == 16
    assert any(b.startswith('median.ipynb: median export cell 16') and '(at most 15)' in b for b in rhythm.violations(nb))
    # the command line exits 1 on a bad notebook, 0 on a good one
    assert rhythm.main(['check', str(nb)]) == 1
    assert rhythm.main(['check', str(_write(tmp_path/'good2.ipynb', GOOD))]) == 0
