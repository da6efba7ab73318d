"""The fastcore rhythm of the notebooks in `nbs/`: measure it, check it, and do the mechanical part of getting there.

Rules (checked by tests/test_style.py):
- export cells: median at most 15 lines per notebook and none over 60;
- no line over 120 characters in any code cell;
- exported code has one statement per line (no `a; b`, no `if x: y`);
- no example cell that only imports: test-only imports go in a `#| hide` cell.

Command line (from the repository root):

    python tools/rhythm.py report [NB ...]      # per notebook: export cells (median, max), wide lines, joined statements
    python tools/rhythm.py check [NB ...]       # the rule violations; exit 1 if any
    python tools/rhythm.py format NB [NB ...]   # split export cells to one top-level def/class each, then black -l 120
"""
from __future__ import annotations

import argparse, ast, json, re, statistics, sys, uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE, MAX_CELL, MAX_MEDIAN = 120, 60, 15
_DIRECTIVE = re.compile(r'^\s*#\|\s*(\S+)')


def _src(cell) -> str:
    s = cell['source']
    return ''.join(s) if isinstance(s, list) else s


def cell_directives(src: str) -> list[str]:
    "The names of a cell's leading `#|` directives (`export`, `hide`, ...)."
    out = []
    for line in src.splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            break
        out.append(m.group(1).rstrip(':'))
    return out


def is_export(src: str) -> bool:
    return any(d in ('export', 'exports', 'exporti') for d in cell_directives(src))


def _code_lines(src: str) -> list[str]:
    "The cell's lines without its leading directives."
    lines = src.splitlines()
    n = len(cell_directives(src))
    return lines[n:]


def joined_statements(src: str) -> list[int]:
    "1-based line numbers (within the cell) that hold more than one statement (`a; b`, `if x: y`)."
    n_dir = len(cell_directives(src))
    try:
        tree = ast.parse('\n'.join(_code_lines(src)))
    except SyntaxError:
        return []
    starts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            starts.setdefault(node.lineno, 0)
            starts[node.lineno] += 1
    return sorted(k + n_dir for k, v in starts.items() if v > 1)


def import_only(src: str) -> bool:
    "A code cell whose statements are all imports."
    try:
        tree = ast.parse('\n'.join(_code_lines(src)))
    except SyntaxError:
        return False
    return bool(tree.body) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)


def notebook_report(path) -> dict:
    "Export cell sizes, wide lines, joined statements and import-only example cells of one notebook."
    cells = json.loads(Path(path).read_text())['cells']
    sizes, wide, joined, imports_shown = [], [], [], []
    for i, c in enumerate(cells):
        if c['cell_type'] != 'code':
            continue
        src = _src(c)
        wide += [(i, len(line)) for line in src.splitlines() if len(line) > MAX_LINE]
        if is_export(src):
            sizes.append(len(_code_lines(src)))
            joined += [(i, k) for k in joined_statements(src)]
        elif import_only(src) and 'hide' not in cell_directives(src):
            imports_shown.append(i)
    return dict(sizes=sizes, median=statistics.median(sizes) if sizes else 0, max=max(sizes, default=0),
                wide=wide, joined=joined, imports_shown=imports_shown)


def violations(path) -> list[str]:
    "Every rule the notebook breaks, as readable lines."
    r = notebook_report(path)
    name = Path(path).name
    out = []
    if r['median'] > MAX_MEDIAN:
        out.append(f"{name}: median export cell {r['median']} lines (at most {MAX_MEDIAN})")
    out += [f"{name}: export cell {i} has {n} lines (at most {MAX_CELL})" for i, n in _big_cells(path)]
    out += [f"{name}: cell {i} has a line of {n} characters (at most {MAX_LINE})" for i, n in r['wide']]
    out += [f"{name}: cell {i} line {k} holds more than one statement" for i, k in r['joined']]
    out += [f"{name}: cell {i} only imports: make it `#| hide` or move the imports to the top" for i in r['imports_shown']]
    return out


def _big_cells(path):
    cells = json.loads(Path(path).read_text())['cells']
    for i, c in enumerate(cells):
        src = _src(c)
        if c['cell_type'] == 'code' and is_export(src) and len(_code_lines(src)) > MAX_CELL:
            yield i, len(_code_lines(src))


def _chunks(code: str) -> list[str]:
    "Split top-level code into chunks, one per def/class (decorators and comments above it go with it)."
    lines = code.splitlines()
    tree = ast.parse(code)
    starts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith('#'):
                first -= 1
            starts.append(first)
    if len(starts) < 2:
        return [code]
    cuts = sorted(set([0] + starts[1:]))
    if starts[0] > 0 and all(not lines[k].strip() or lines[k].lstrip().startswith('#') for k in range(starts[0])):
        pass
    pieces = [lines[a:b] for a, b in zip(cuts, cuts[1:] + [len(lines)])]
    return ['\n'.join(p).strip('\n') for p in pieces if '\n'.join(p).strip()]


def _new_cell(src: str) -> dict:
    return {'cell_type': 'code', 'execution_count': None, 'id': uuid.uuid4().hex[:8], 'metadata': {},
            'outputs': [], 'source': src.splitlines(keepends=True)}


def split_export_cells(nb: dict) -> int:
    "Split every export cell holding several top-level defs/classes into one cell each; returns the number added."
    out, added = [], 0
    for c in nb['cells']:
        src = _src(c)
        if c['cell_type'] != 'code' or not is_export(src):
            out.append(c)
            continue
        n_dir = len(cell_directives(src))
        head = src.splitlines()[:n_dir]
        try:
            chunks = _chunks('\n'.join(_code_lines(src)))
        except SyntaxError:
            out.append(c)
            continue
        if len(chunks) < 2:
            out.append(c)
            continue
        c['source'] = ('\n'.join(head + [chunks[0]])).splitlines(keepends=True)
        out.append(c)
        for ch in chunks[1:]:
            out.append(_new_cell('\n'.join(head + [ch])))
            added += 1
    nb['cells'] = out
    return added


def black_cells(nb: dict, line_length: int = MAX_LINE) -> int:
    "Format every code cell with black (strings untouched); cells black cannot parse are left as they are."
    import black
    mode = black.Mode(line_length=line_length, string_normalization=False, is_ipynb=True,
                      magic_trailing_comma=True)
    changed = 0
    for c in nb['cells']:
        if c['cell_type'] != 'code':
            continue
        src = _src(c)
        n_dir = len(cell_directives(src))
        head = src.splitlines()[:n_dir]
        code = '\n'.join(_code_lines(src))
        try:
            body = black.format_cell(code, fast=False, mode=mode) if code.strip() else code
        except Exception:  # black.NothingChanged, or a cell black cannot parse
            continue
        new = '\n'.join(head + [body]) if head else body
        if new != src:
            c['source'] = new.splitlines(keepends=True)
            changed += 1
    return changed


def format_notebook(path) -> tuple[int, int]:
    "Split export cells, then black every code cell; writes the notebook in nbformat's layout."
    path = Path(path)
    nb = json.loads(path.read_text())
    added = split_export_cells(nb)
    changed = black_cells(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return added, changed


def _paths(names):
    return [Path(n) for n in names] if names else sorted((ROOT/'nbs').glob('*.ipynb'))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('cmd', choices=['report', 'check', 'format'])
    ap.add_argument('notebooks', nargs='*')
    a = ap.parse_args(argv)
    paths = _paths(a.notebooks)
    if a.cmd == 'format':
        for p in paths:
            added, changed = format_notebook(p)
            print(f"{p.name}: {added} cell(s) split off, {changed} cell(s) reformatted")
        return 0
    if a.cmd == 'report':
        for p in paths:
            r = notebook_report(p)
            print(f"{p.name:36s} export={len(r['sizes']):3d} median={r['median']:5.1f} max={r['max']:4d} "
                  f"wide={len(r['wide']):3d} joined={len(r['joined']):3d} import-only={len(r['imports_shown'])}")
        return 0
    bad = [v for p in paths for v in violations(p)]
    print('\n'.join(bad) if bad else 'all notebooks follow the rhythm')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
