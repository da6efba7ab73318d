"""The architecture as a test: each module imports only the layers below it (DESIGN.md, "The architecture").

ground (core, weights, io, metrics, synthetic) <- models <- pillars (focus, matching, tracking, bench, qc) <- faces (cli,
widgets). A pillar imports the ground, the models and itself; the documented cross edges are the learned tracker
(`tracking.learned` uses `matching`) and quality control (`qc` uses `focus`)."""
import ast
from pathlib import Path

import pytest

PKG = 'microscopy_toolkit'
ROOT = Path(__file__).resolve().parents[1]/PKG
GROUND = {'core', 'weights', 'io', 'metrics', 'synthetic', '_modidx', '__init__'}
ORDER = {'core': 0, 'weights': 1, 'io': 1, 'metrics': 2, 'synthetic': 2, 'models': 3}
PILLARS = {'focus', 'matching', 'tracking', 'bench', 'qc'}
FACES = {'cli', 'widgets'}
EDGES = {('tracking.learned', 'matching'), ('tracking.released', 'matching'), ('qc', 'focus')}


def component(module: str) -> str:
    "The top-level part of the package a dotted module name belongs to (`focus.train` -> `focus`)."
    return module.split('.')[0]


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    "Package-internal modules a file imports (absolute `microscopy_toolkit.x` and relative `.x` / `..x`), dotted."
    rel = path.relative_to(root).with_suffix('')
    parts = [p for p in rel.parts if p != '__init__']
    pkg = parts if path.name == '__init__.py' else parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name[len(PKG) + 1:] for a in node.names if a.name.startswith(PKG + '.')}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = '.'.join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith(PKG + '.'):
                mod = node.module[len(PKG) + 1:]
            else:
                continue
            out.add(mod or '__init__')
    return {m for m in out if m}


def allowed(importer: str, imported: str) -> bool:
    "Whether module `importer` may import `imported` under the layering rules."
    a, b = component(importer), component(imported)
    if a == b or a in FACES or b in {'__init__', '_modidx'}:
        return True
    if any(importer.startswith(src) and b == dst for src, dst in EDGES):
        return True
    if a in PILLARS:
        return b in GROUND or b == 'models'
    if a in ORDER and b in ORDER:
        return ORDER[b] < ORDER[a]
    return False


def violations(root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted(root.rglob('*.py')):
        if path.name == '_modidx.py':
            continue
        name = '.'.join(path.relative_to(root).with_suffix('').parts).replace('.__init__', '')
        out += [f"{name} imports {m}" for m in sorted(imported_modules(path, root)) if not allowed(name, m)]
    return out


def test_every_module_imports_only_lower_layers():
    bad = violations()
    assert not bad, 'imports across layers:\n' + '\n'.join(bad)


def test_pillars_exist_and_ground_is_ground():
    names = {p.name for p in ROOT.iterdir()}
    assert {'core.py', 'weights.py', 'models', 'focus', 'matching', 'tracking', 'bench', 'cli'} <= names | {
        n[:-3] for n in names}, names


@pytest.mark.parametrize('importer,imported,ok', [
    ('focus.clip', 'bench.evaluate', False),      # the edge issue 14 removed
    ('focus.train', 'models.clip', True),
    ('core', 'models.sd', False),                 # ground imports nothing above it
    ('tracking.learned', 'matching.model', True), # the documented edge
    ('tracking.linker', 'matching.model', False),
    ('qc.run', 'focus.sharpness', True),
    ('cli.track', 'tracking.learned', True),
    ('models.clip', 'weights', True),
    ('weights', 'models.clip', False),
])
def test_rules_hand_worked(importer, imported, ok):
    assert allowed(importer, imported) == ok


def test_checker_finds_a_bad_import(tmp_path):
    "The test can fail: a fake package whose focus module imports bench is reported, with relative and absolute forms."
    pkg = tmp_path/PKG
    (pkg/'focus').mkdir(parents=True)
    (pkg/'focus'/'__init__.py').write_text('')
    (pkg/'focus'/'a.py').write_text(f'from ..bench.evaluate import x\nimport {PKG}.matching.model\nfrom .b import y\n')
    (pkg/'core.py').write_text('from .io import z\n')
    assert violations(pkg) == ['core imports io', 'focus.a imports bench.evaluate', 'focus.a imports matching.model']
