"""The documentation site: sidebar and Quarto config, `nbdev_proc_nbs` running clean, a show_doc for every public
function, and the pages rendered (nbconvert) and opened in headless Chromium with screenshots as evidence.

Quarto cannot be installed everywhere, so everything up to Quarto's render is checked (tools/docsite.py). Screenshots
of the index and one page per pillar go to $MTK_SCREENSHOT_DIR (default `_screenshots/` at the repository root), with
each page's rendered DOM and a report.json of timings and page statistics.
"""
import configparser, json, os, sys, time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'tools'))
import docsite  # noqa: E402

SECTIONS = ['Tutorials', 'Core', 'Focus', 'Matching', 'Tracking', 'Bench', 'QC']
PILLARS = {'Focus': '1', 'Matching': '2', 'Tracking': '3', 'Bench': '4'}   # notebook number prefixes per section
# the `site` fixture builds the whole site once per module: under pytest-xdist, keep the module on one worker
pytestmark = pytest.mark.xdist_group('docsite')


# ------------------------------------------------------------------------------------------- sidebar and config
def test_sidebar_lists_every_notebook_and_tutorial_exactly_once():
    entries = docsite.sidebar_entries(ROOT/'nbs'/'sidebar.yml')
    listed = [f for _, f in entries]
    dups = sorted({f for f in listed if listed.count(f) > 1})
    assert not dups, f"listed more than once in nbs/sidebar.yml: {dups}"
    pages = docsite.site_files(ROOT)
    unlisted = [f for f in pages if f not in listed]
    assert not unlisted, f"notebooks missing from nbs/sidebar.yml: {unlisted}"
    missing = [f for f in listed if f not in pages]
    assert not missing, f"nbs/sidebar.yml lists files that do not exist (in nbs/ or tutorials/): {missing}"
    assert listed[0] == 'index.ipynb', "the sidebar starts with the index page"
    sections = list(dict.fromkeys(s for s, _ in entries if s))
    assert sections == SECTIONS, f"sidebar sections {sections}, expected {SECTIONS}"
    by_sec = {s: [f for t, f in entries if t == s] for s in SECTIONS}
    assert by_sec['Tutorials'] == [f for f in pages if f.startswith('tutorials/')]
    for sec, digit in PILLARS.items():
        wrong = [f for f in by_sec[sec] if not f.startswith(digit)]
        assert not wrong, f"{sec}: {wrong} do not belong there"
    assert by_sec['Core'] and all(f[0] in '056' for f in by_sec['Core']), by_sec['Core']


def test_quarto_yml_is_an_nbdev_website_with_our_sidebar_navbar_and_repo_links():
    q = yaml.safe_load((ROOT/'nbs'/'_quarto.yml').read_text())
    assert q['project']['type'] == 'website'
    assert {'nbdev.yml', 'sidebar.yml'} <= set(q['metadata-files'])
    w = q['website']
    assert w['repo-url'].startswith('https://github.com/') and 'issue' in w['repo-actions']
    assert any('github' in str(i.get('icon', '')) for i in w['navbar'].get('right', []))
    listed = {f for _, f in docsite.sidebar_entries(ROOT/'nbs'/'sidebar.yml')}
    def hrefs(items):
        for it in items:
            if isinstance(it, str): yield it
            elif 'href' in it: yield it['href']
            if isinstance(it, dict) and 'menu' in it: yield from hrefs(it['menu'])
    nav = list(hrefs(w['navbar'].get('left', [])))
    assert nav and all(h in listed for h in nav), f"navbar links to pages the site does not have: {set(nav) - listed}"
    pre = q['project'].get('pre-render')
    assert pre and 'docsite.py tutorials' in str(pre), "the tutorials reach the site through the pre-render step"
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    assert cfg['DEFAULT'].getboolean('custom_sidebar'), "custom_sidebar = True, or nbdev overwrites nbs/sidebar.yml"
    gi = (ROOT/'.gitignore').read_text().split()
    assert {'_proc/', '_docs/', '_screenshots/'} <= set(gi) and 'nbs/sidebar.yml' not in gi


def test_mixed_import_checker_and_fixer(tmp_path):
    "The helper that names (and splits) the cells nbdev would warn about while processing, on a tiny notebook."
    import nbformat
    from nbformat.v4 import new_notebook, new_code_cell
    nb = new_notebook(cells=[new_code_cell('#| default_exp tiny'), new_code_cell('#| export\ndef f(x): return x'),
                             new_code_cell('#| hide\nimport os; x = f(1)\nwith open(os.devnull) as fh:\n    import json\n    y = json.dumps(x)'),
                             new_code_cell('try:\n    import cupy\nexcept ImportError: cupy = None')])
    p = tmp_path/'00_tiny.ipynb'; nbformat.write(nb, p)
    assert [i for i, _ in docsite.mixed_import_cells(p)] == [2, 3]
    assert docsite.split_imports(p, write=True) == [3]                  # optional imports are left alone
    cells = json.loads(p.read_text())['cells']
    assert ''.join(cells[2]['source']) == '#| hide\nimport os\nimport json'
    assert ''.join(cells[3]['source']) == '#| hide\nx = f(1)\nwith open(os.devnull) as fh:\n    y = json.dumps(x)'
    assert [i for i, _ in docsite.mixed_import_cells(p)] == [4]
    assert all(isinstance(c['source'], list) for c in cells), "the fixer writes line lists, as nbdev_clean does"


# ------------------------------------------------------------------------------------------------ the pipeline
@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "nbdev_proc_nbs + pre-render + HTML + Chromium screenshots, once for this module, on a copy of the repository."
    shots = Path(os.environ.get('MTK_SCREENSHOT_DIR') or ROOT/'_screenshots')
    t = time.perf_counter()
    rep = docsite.build(ROOT, work=tmp_path_factory.mktemp('docs'), screenshot_dir=shots)
    rep['timings']['fixture'] = round(time.perf_counter() - t, 1)
    print('docs pipeline timings (s):', json.dumps(rep['timings']))
    return rep


def _need_proc(site):
    if site['proc']['rc'] != 0:
        pytest.fail('nbdev_proc_nbs failed, so nothing was rendered (see test_nbdev_proc_nbs_runs_clean)')


def test_nbdev_proc_nbs_runs_clean(site):
    out = site['proc']['output']
    problems = docsite.proc_output_problems(out)
    if site['proc']['rc'] != 0 or problems:
        mixed = [f'{nb.name}: cell {i}: {line}' for nb in sorted((ROOT/'nbs').glob('*.ipynb'))
                 for i, line in docsite.mixed_import_cells(nb)]
        hint = ('\nCells that import and run other code (nbdev executes them alone while processing; move the imports '
                'into their own cell, e.g. `python tools/docsite.py check-imports --fix`):\n  ' + '\n  '.join(mixed)
                if mixed else '')
        tail = out[-4000:]
        pytest.fail(f"nbdev_proc_nbs exit {site['proc']['rc']}, {len(problems)} warning/error lines:\n"
                    + '\n'.join(problems[:30]) + f"\n--- output tail ---\n{tail}{hint}")


def test_processing_changes_no_tracked_config(site):
    "nbdev_proc_nbs regenerates nbdev.yml (and would regenerate sidebar.yml): the committed ones must already match."
    nbs = Path(site['proc_dir']).parent/'nbs'
    for f in ('nbdev.yml', 'sidebar.yml', '_quarto.yml'):
        assert (nbs/f).read_text() == (ROOT/'nbs'/f).read_text(), f"nbdev_proc_nbs rewrites nbs/{f}"


def test_every_public_function_has_an_executed_show_doc(site):
    _need_proc(site)
    missing = docsite.missing_show_docs(site['proc_dir'], ROOT)
    assert not missing, f"public functions/classes without an executed show_doc in the processed notebook: {missing}"


def test_every_sidebar_page_renders_to_html(site):
    _need_proc(site)
    html = site.get('html', {})
    listed = [f for _, f in docsite.sidebar_entries(ROOT/'nbs'/'sidebar.yml')]
    assert not [f for f in listed if f not in html], f"pages without HTML: {[f for f in listed if f not in html]}"
    for f in listed:
        text = Path(html[f]).read_text()
        assert 'mtk-sidebar' in text and '<h1' in text, f"{f}: no sidebar or title"


def _expects(proc_nb):
    "Whether a processed notebook has a figure (PNG output) and a table (markdown or HTML table) to show."
    nb = json.loads(Path(proc_nb).read_text())
    fig = table = False
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and '\n|' in '\n' + src and '|---' in src.replace(' ', ''): table = True
        for o in c.get('outputs', []):
            d = o.get('data', {})
            fig |= 'image/png' in d
            table |= '<table' in ''.join(d.get('text/html', '')) or '|---' in ''.join(d.get('text/markdown', '')).replace(' ', '')
    return fig, table


def test_pages_open_in_headless_chromium(site):
    if not docsite.find_chromium():
        pytest.fail('Chromium not found. ' + docsite.CHROMIUM_HELP)
    _need_proc(site)
    pages = site['pages']
    assert set(pages) == set(docsite.PAGES)
    for name, p in pages.items():
        png = Path(p['png'])
        assert png.exists() and png.stat().st_size > 10_000, f"{name}: no screenshot at {png}"
        assert (p['width'], p['height']) == (1280, 2000), p
        assert p['std'] > 10 and p['ink'] > 0.01, f"{name}: the screenshot looks blank ({p})"
        assert p['sidebar'] and p['h1'] >= 1, f"{name}: the rendered page has no sidebar or title ({p})"
        fig, table = _expects(Path(site['proc_dir'])/p['notebook'])
        if fig: assert p['png_figures'] >= 1, f"{name}: the notebook has plots but the page shows no figure ({p})"
        if table: assert p['tables'] >= 1, f"{name}: the notebook has tables but the page shows none ({p})"
    assert pages['index']['png_figures'] >= 1 and pages['index']['tables'] >= 1, pages['index']
    assert sum(p['png_figures'] > 0 for p in pages.values()) >= 4 and sum(p['tables'] > 0 for p in pages.values()) >= 4
