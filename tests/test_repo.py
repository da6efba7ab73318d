"The repository's own promises: the README's two commands, CI running the test command verbatim, notebooks and package in sync."
import re, shutil, subprocess
from pathlib import Path

import pytest


def readme_commands(root):
    text = (root/'README.md').read_text()
    blocks = re.findall(r'```(?:bash|sh)\n(.*?)```', text, flags=re.S)
    return [b.strip() for b in blocks]


def test_readme_has_two_commands_and_ci_runs_the_second(root):
    cmds = readme_commands(root)
    assert len(cmds) == 2, f"README must show exactly two command blocks, found {len(cmds)}"
    install_run, test_cmd = cmds
    assert 'mtk quickstart' in install_run and 'pip install' in install_run
    assert 'pip install' in test_cmd and 'pytest' in test_cmd and '.[dev]' in test_cmd
    ci_lines = [l.strip() for l in (root/'.ci/run').read_text().splitlines()]
    assert test_cmd in ci_lines, ".ci/run must run the README's test command verbatim"


def _tracked_copy(root, dest):
    files = subprocess.run(['git', 'ls-files'], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = root/f
        if not src.exists(): continue
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest/f)
    return files


def test_nbdev_export_and_clean_change_no_tracked_file(root, tmp_path):
    if not (root/'.git').exists(): pytest.skip('not a git checkout')
    files = _tracked_copy(root, tmp_path)
    before = {f: (tmp_path/f).read_bytes() for f in files if (tmp_path/f).exists()}
    subprocess.run(['nbdev_export'], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(['nbdev_clean'], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(['nbdev_clean', '--fname', 'tutorials'], cwd=tmp_path, check=True, capture_output=True)
    changed = [f for f, b in before.items() if not (tmp_path/f).exists() or (tmp_path/f).read_bytes() != b]
    new = [str(p.relative_to(tmp_path)) for p in (tmp_path/'microscopy_toolkit').rglob('*.py') if str(p.relative_to(tmp_path)) not in before]
    assert not changed, f"nbdev_export/nbdev_clean would change tracked files (run them and commit): {changed}"
    assert not new, f"nbdev_export writes modules that are not committed: {new}"


def test_papermill_parameters_tag_survives_clean(root):
    import json
    for nb in sorted((root/'tutorials').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters' for papermill"


def test_every_tutorial_takes_the_quick_parameter(root):
    "`mtk quickstart` runs the tutorials with quick=True (the short runs), `--full` with quick=False (the default here)."
    import ast, json
    for nb in sorted((root/'tutorials').glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        src = next(''.join(c['source']) for c in cells if 'parameters' in c.get('metadata', {}).get('tags', []))
        values = {t.id: n.value for n in ast.parse(src).body if isinstance(n, ast.Assign) for t in n.targets
                  if isinstance(t, ast.Name)}
        assert 'quick' in values and ast.literal_eval(values['quick']) is False, f"{nb.name}: needs `quick = False`"
        assert ast.literal_eval(values['smoke']) is True, f"{nb.name}: smoke mode is the default"


def _make_readme(root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('make_readme', root/'tools'/'make_readme.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_readme_is_generated_from_index(root):
    "README.md (and its figures) is exactly what tools/make_readme.py makes of nbs/index.ipynb."
    images = {}
    text = _make_readme(root).readme_from_index(root/'nbs'/'index.ipynb', images)
    assert text.encode('utf-8') == (root/'README.md').read_bytes(), \
        "README.md is not generated from nbs/index.ipynb: edit the notebook, then run `python tools/make_readme.py`"
    assert images, "the index notebook stores its figure (execute it before committing)"
    linked = re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', text)
    assert sorted(linked) == sorted(images)
    for rel, data in images.items():
        assert (root/rel).exists() and (root/rel).read_bytes() == data, f"{rel} differs from the index's figure"
    stale = [p.name for p in (root/'images').glob('readme_*.png') if f'images/{p.name}' not in images]
    assert not stale, f"images no longer in the README: {stale}"


def test_index_code_cells_are_executed(root):
    import json
    cells = json.loads((root/'nbs'/'index.ipynb').read_text())['cells']
    code = [c for c in cells if c['cell_type'] == 'code']
    assert code, "the index keeps its example code"
    for c in code:
        src = ''.join(c['source'])
        only_imports = all(l.startswith(('from ', 'import ', '#')) or not l.strip() for l in src.splitlines())
        assert only_imports or c['outputs'], f"index cell without stored outputs:\n{src}"
        assert not any(o['output_type'] == 'error' for o in c['outputs'])


def test_ci_installs_chromium_before_the_tests(root):
    lines = [l.strip() for l in (root/'.ci/run').read_text().splitlines()]
    test_cmd = readme_commands(root)[1]
    install = [i for i, l in enumerate(lines) if 'apt-get install' in l and 'chromium' in l]
    check = [i for i, l in enumerate(lines) if 'command -v chromium' in l]
    assert install and check and max(install + check) < lines.index(test_cmd), \
        ".ci/run installs chromium (only when missing) before the README test command"


def _third_party_imports(pkg_dir) -> dict[str, str]:
    "Top-level module -> first file importing it, for every absolute import in the package that is not stdlib or ours."
    import ast, sys
    found = {}
    for p in sorted(pkg_dir.rglob('*.py')):
        for n in ast.walk(ast.parse(p.read_text(encoding='utf-8'))):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module] if (
                isinstance(n, ast.ImportFrom) and n.level == 0 and n.module) else []
            for m in (x.split('.')[0] for x in names):
                if m not in sys.stdlib_module_names and m != pkg_dir.name: found.setdefault(m, p.name)
    return found


def _norm(name): return re.sub(r'[-_.]+', '-', name).lower()


def test_every_third_party_import_is_a_declared_requirement(root):
    """The wheel test installs into a venv that sees the system's packages (see tests/test_wheel.py), so a missing
    requirement would not show there: this check reads every import of the package instead, maps it to its
    distribution, and wants that distribution in settings.ini's `requirements` (not only pulled in by another one)."""
    from configparser import ConfigParser
    from importlib.metadata import packages_distributions
    cfg = ConfigParser(delimiters=['='])
    cfg.read(root/'settings.ini', encoding='utf-8')
    declared = {_norm(re.split(r'[<>=!~;\[ ]', r)[0]) for r in cfg['DEFAULT']['requirements'].split()}
    dists = packages_distributions()
    imports = _third_party_imports(root/'microscopy_toolkit')
    assert {'torch', 'numpy', 'open_clip'} <= set(imports), sorted(imports)      # the scan sees the package's imports
    unknown = sorted(m for m in imports if m not in dists)
    assert not unknown, f"imports that no installed distribution provides: {unknown}"
    missing = sorted(f"{m} ({imports[m]}): {dists[m]}" for m in imports if not {_norm(d) for d in dists[m]} & declared)
    assert not missing, "imported but not in settings.ini requirements:\n  " + '\n  '.join(missing)
    assert _norm('PyYAML') == 'pyyaml' and _norm('jupyter_bbox_widget') == 'jupyter-bbox-widget'
