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
