"""Every public function (a function named in its module's `__all__`) has an executed example in its notebook.

An example is a code cell that is not an export cell (`#| export`, `#| exports`, `#| exporti`), is not flagged
`#| eval: false`, and names the function as a whole word. Notebooks are `nbs/[0-9]*.ipynb` with a `#| default_exp`;
a notebook added later (such as `nbs/50_widgets.ipynb`) is covered as soon as it exists.
"""
import importlib, inspect, json, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
LIB = 'microscopy_toolkit'
EXPORT_FLAGS = {'export', 'exports', 'exporti'}
sys.path.insert(0, str(ROOT/'tools'))
from docsite import default_exp, directives  # noqa: E402  (nbdev's own parse of `#|` lines)


def _code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    return [''.join(c['source']) if isinstance(c['source'], list) else c['source']
            for c in nb['cells'] if c['cell_type'] == 'code']


def _is_example_cell(src: str) -> bool:
    d = directives(src)
    return not (d.keys() & EXPORT_FLAGS) and [v.lower() for v in d.get('eval', [])] != ['false']


def public_functions(module_name: str) -> list[str]:
    "Names in the module's `__all__` that are functions defined in that module."
    mod = importlib.import_module(f'{LIB}.{module_name}')
    return [n for n in getattr(mod, '__all__', [])
            if inspect.isfunction(obj := getattr(mod, n, None)) and obj.__module__ == mod.__name__]


def missing_examples(notebooks) -> dict[str, list[str]]:
    "For each notebook with a `default_exp`, the public functions of its module that no example cell names."
    out = {}
    for nb in notebooks:
        nb = Path(nb)
        mod = default_exp(nb)
        if mod is None: continue
        examples = [src for src in _code_cells(nb) if _is_example_cell(src)]
        missing = [n for n in public_functions(mod)
                   if not any(re.search(rf'\b{re.escape(n)}\b', src) for src in examples)]
        if missing: out[nb.name] = missing
    return out


def _notebooks() -> list[Path]:
    return sorted(NBS.glob('[0-9]*.ipynb'))


def test_every_public_function_has_an_example():
    nbs = _notebooks()
    assert len([nb for nb in nbs if default_exp(nb)]) >= 20, 'expected the library notebooks under nbs/'
    missing = missing_examples(nbs)
    assert not missing, 'public functions without an executed example cell:\n' + '\n'.join(
        f'  {nb}: {", ".join(names)}' for nb, names in missing.items())


def test_checker_reports_a_removed_example(tmp_path):
    "A copy of nbs/00_core.ipynb passes; with the cells that call `progress` outside export cells removed, it fails."
    src = NBS/'00_core.ipynb'
    good = tmp_path/'00_core.ipynb'
    shutil.copy(src, good)
    assert missing_examples([good]) == {}
    nb = json.loads(src.read_text(encoding='utf-8'))
    def calls_progress(c):
        s = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        return c['cell_type'] == 'code' and _is_example_cell(s) and re.search(r'\bprogress\b', s)
    nb['cells'] = [c for c in nb['cells'] if not calls_progress(c)]
    broken = tmp_path/'broken'/'00_core.ipynb'
    broken.parent.mkdir()
    broken.write_text(json.dumps(nb), encoding='utf-8')
    assert missing_examples([broken]) == {'00_core.ipynb': ['progress']}
    # a cell flagged `#| eval: false` does not count as an executed example
    nb['cells'].append({'cell_type': 'code', 'metadata': {}, 'execution_count': None, 'outputs': [],
                        'source': '#| eval: false\nprogress(range(3))'})
    broken.write_text(json.dumps(nb), encoding='utf-8')
    assert missing_examples([broken]) == {'00_core.ipynb': ['progress']}
