"""The documentation site without Quarto: nbdev's notebook processing, HTML pages and headless-Chromium screenshots.

The real site is built by `nbdev_docs` (Quarto). Quarto cannot be installed on every machine, so the docs test
(tests/test_docs.py) checks everything up to Quarto's render:

1. `nbdev_proc_nbs` on a copy of the project must run clean (nbdev only checks that a `quarto` executable exists
   before processing, so a stub that refuses to run is put first on PATH; nothing ever calls it);
2. the project's Quarto pre-render step (copying `tutorials/` into the site) is run as `_quarto.yml` declares it;
3. the processed notebooks are rendered to HTML with nbconvert, with a sidebar built from `nbs/sidebar.yml`;
4. chosen pages are opened in headless Chromium: a screenshot and the rendered DOM of each.

Command line (from the repository root):

    python tools/docsite.py build [--out DIR] [--work DIR]   # whole pipeline, screenshots in DIR (default _screenshots)
    python tools/docsite.py tutorials                          # Quarto pre-render step: ../tutorials -> ./tutorials
    python tools/docsite.py check-imports [--fix]              # cells nbdev would warn about (imports mixed with code)
"""
from __future__ import annotations

import argparse, ast, base64, html, io, json, os, re, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'microscopy_toolkit'
# the pages opened in Chromium: the index and one page per pillar
PAGES = {'index': 'index.ipynb', 'focus': '10_focus.sharpness.ipynb', 'matching': '21_matching.attention.ipynb',
         'tracking': '31_tracking.ctc.ipynb', 'bench': '41_bench.evaluate.ipynb'}
CHROMIUM_HELP = ("Chromium is needed to render the documentation pages headless. Install it (Debian/Ubuntu: "
                 "`apt-get install chromium`; .ci/run does this) or point $MTK_CHROMIUM at a Chrome/Chromium binary.")


# ---------------------------------------------------------------------------------------------------- sidebar
def sidebar_entries(sidebar_yml) -> list[tuple[str | None, str]]:
    "(section, file) for every file listed in a Quarto sidebar.yml, in order; nested sections keep the top-level name."
    d = yaml.safe_load(Path(sidebar_yml).read_text())
    out = []
    def walk(items, section):
        for it in items or []:
            if isinstance(it, str): out.append((section, it))
            elif isinstance(it, dict):
                if 'href' in it: out.append((section, it['href']))
                if 'contents' in it: walk(it['contents'], section or it.get('section'))
    sb = d['website']['sidebar']
    for s in (sb if isinstance(sb, list) else [sb]): walk(s.get('contents'), None)
    return out


def site_files(root=ROOT) -> list[str]:
    "Every page the site must show: the notebooks in nbs/ and the tutorials (as `tutorials/<name>`), sorted."
    root = Path(root)
    nbs = [p.name for p in sorted((root/'nbs').glob('*.ipynb'))]
    return nbs + [f'tutorials/{p.name}' for p in sorted((root/'tutorials').glob('*.ipynb'))]


def copy_tutorials(dest='.', src=None):
    "Quarto pre-render step: copy the papermill tutorials (stored without outputs) into the site as `tutorials/`."
    dest = Path(dest); src = Path(src) if src else dest.resolve().parent/'tutorials'
    (dest/'tutorials').mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(src).glob('*.ipynb')): shutil.copy2(p, dest/'tutorials'/p.name)


# ------------------------------------------------------------------------------------- imports mixed with code
def directives(src) -> dict[str, list[str]]:
    "A code cell's leading `#|` directives as nbdev itself parses them: `{'export': [], 'eval': ['false'], ...}`."
    from execnb.nbio import mk_cell
    from nbdev.process import extract_directives
    return {k.rstrip(':'): v for k, v in extract_directives(mk_cell(src), remove=False).items()}


def _walk_has(tree, types): return any(isinstance(n, types) for n in ast.walk(tree))


def mixed_import_cells(nb_path) -> list[tuple[int, str]]:
    """(cell index, first line) of the code cells that nbdev's `exec_show_docs` would execute *and* warn about:
    cells that import and also run other code. nbdev executes every importing cell while building the docs, so such a
    cell runs without the cells before it; split its imports into a cell of their own (`check-imports --fix`)."""
    from nbdev.processors import _do_eval, add_show_docs
    from nbdev.process import NBProcessor
    from execnb.nbio import read_nb
    nb = read_nb(nb_path); hits = []
    orig = {id(c): i for i, c in enumerate(nb.cells)}                # indices in the notebook file, not after
    def proc(cell):                                                  # add_show_docs has inserted its cells
        if not getattr(nb, 'has_docs_', True): return             # nbdev executes nothing in notebooks without docs
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            _do_eval(cell)
        if any('imports and other code' in str(x.message) for x in w) and id(cell) in orig:
            hits.append((orig[id(cell)], (cell.source.strip().splitlines() or [''])[0]))
    NBProcessor(nb_path, procs=[add_show_docs, proc], nb=nb).process()
    return hits


def _hoist_imports(src) -> tuple[str, str] | None:
    """(imports, rest): every import statement of a cell's source moved out (top level or nested, also `import x; x.f()`
    lines), or None when that is not safe: imports under `try`/`if` (optional imports) or a body left empty."""
    tree = ast.parse(src)
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    imps = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    def guarded(n):
        while n in parents:
            n = parents[n]
            if isinstance(n, (ast.Try, ast.If)) or type(n).__name__ == 'TryStar': return True
        return False
    if not imps or any(guarded(n) for n in imps): return None
    lines = src.splitlines(keepends=True)
    seg = {id(n): ast.get_source_segment(src, n) for n in imps}
    for n in sorted(imps, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        a, b = n.lineno - 1, n.end_lineno - 1
        head, tail = lines[a][:n.col_offset], lines[b][n.end_col_offset:]
        if not head.strip() and (not tail.strip() or tail.strip().startswith('#')):
            del lines[a:b + 1]; continue                               # the statement has its lines to itself
        if b != a: return None
        m = re.match(r'\s*;\s*', tail)
        if m: lines[a] = head + tail[m.end():]                           # `import x; rest`
        else:
            m = re.search(r'\s*;\s*$', head)
            if not m: return None
            lines[a] = head[:m.start()] + tail                           # `rest; import x`
    rest = ''.join(lines).strip('\n')
    try: ast.parse(rest)
    except SyntaxError: return None
    imports = list(dict.fromkeys(seg[id(n)] for n in sorted(imps, key=lambda n: (n.lineno, n.col_offset))))
    return '\n'.join(imports), rest


def split_imports(nb_path, write=False) -> list[int]:
    """Move the imports of every cell `mixed_import_cells` names into a new code cell just before it (nbdev then
    executes only the imports while building the docs). Returns the indices (in the original notebook) of the cells
    it could not fix, to fix by hand."""
    nb_path = Path(nb_path)
    hits = {i for i, _ in mixed_import_cells(nb_path)}
    if not hits: return []
    nb = json.loads(nb_path.read_text())
    cells, left = [], []
    for i, c in enumerate(nb['cells']):
        res = _hoist_imports(''.join(c['source'])) if i in hits else None
        if i in hits and res is None: left.append(i)
        if res is None:
            cells.append(c); continue
        imp_src, rest = res
        dirs = [l for l in rest.splitlines() if l.startswith('#|')]       # `#| hide` etc. hold for the imports too
        new = {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [],
               'source': '\n'.join(dirs + [imp_src]).splitlines(True)}     # line lists, as nbformat / nbdev_clean write
        if 'id' in c: new = {'cell_type': 'code', 'execution_count': None, 'id': f"{c['id']}-i"[:64], **new}
        cells += [new, {**c, 'source': rest.splitlines(True)}]
    nb['cells'] = cells
    if write: nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return left


# ------------------------------------------------------------------------------------------------- nbdev processing
def copy_project(root, dest) -> Path:
    "Copy what `nbdev_proc_nbs` and the site need (settings, notebooks, tutorials, tools, package sources) to `dest`."
    root, dest = Path(root), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ign = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints', '*.pyc')
    for f in ('settings.ini', 'setup.py'): shutil.copy2(root/f, dest/f)
    for d in ('nbs', 'tutorials', 'tools', PACKAGE): shutil.copytree(root/d, dest/d, ignore=ign, dirs_exist_ok=True)
    return dest


def quarto_stub(bin_dir) -> Path:
    "A `quarto` that refuses to run: nbdev checks that one exists before processing notebooks, and never calls it there."
    bin_dir = Path(bin_dir); bin_dir.mkdir(parents=True, exist_ok=True)
    q = bin_dir/'quarto'
    q.write_text('#!/bin/sh\necho "quarto stub (tools/docsite.py): Quarto is not installed here" >&2\nexit 3\n')
    q.chmod(0o755)
    return q


def run_proc_nbs(project, n_workers=2) -> subprocess.CompletedProcess:
    "Run `nbdev_proc_nbs` in `project` (a copy of the repo) with the quarto stub on PATH; output captured as text."
    project = Path(project)
    stub = quarto_stub(project/'.quarto-stub')
    env = {**os.environ, 'PATH': f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}", 'MPLBACKEND': 'Agg',
           'MTK_PROGRESS': '0', 'PYTHONUNBUFFERED': '1'}
    exe = Path(sys.executable).with_name('nbdev_proc_nbs')
    cmd = [str(exe) if exe.exists() else 'nbdev_proc_nbs', '--n_workers', str(n_workers)]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)


def run_pre_render(proc_dir) -> list[str]:
    "Run the `project: pre-render` commands of the processed `_quarto.yml` in the processed site, as Quarto would."
    proc_dir = Path(proc_dir)
    q = yaml.safe_load((proc_dir/'_quarto.yml').read_text())
    cmds = q.get('project', {}).get('pre-render') or []
    cmds = [cmds] if isinstance(cmds, str) else cmds
    for c in cmds:
        c = re.sub(r'^python3?\b', lambda m: sys.executable, c)
        subprocess.run(c, shell=True, cwd=proc_dir, check=True, capture_output=True, text=True)
    return cmds


def proc_output_problems(text) -> list[str]:
    "Lines of `nbdev_proc_nbs` output that mean it did not run clean (warnings, tracebacks, errors, quarto installs)."
    pat = re.compile(r'warning|traceback|error|exception|quarto is not installed|installing', re.I)
    return [l for l in text.splitlines() if pat.search(l)]


# ---------------------------------------------------------------------------------------- public API vs show_doc
def default_exp(nb_path) -> str | None:
    "The module a notebook exports to (`#| default_exp X`), or None."
    for c in json.loads(Path(nb_path).read_text())['cells']:
        if c['cell_type'] != 'code': continue
        d = directives(''.join(c['source']))
        if d.get('default_exp'): return d['default_exp'][0]


def public_defs(module_file) -> list[str]:
    "Names in the module's `__all__` that it defines itself as a function or class (read from the source, no import)."
    tree = ast.parse(Path(module_file).read_text())
    names = []
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in n.targets):
            names = ast.literal_eval(n.value)
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return [o for o in names if o in defs]


def show_doc_calls(nb) -> dict[str, bool]:
    "name -> whether its show_doc cell has output, for every `show_doc(name)` cell in a (processed) notebook dict."
    out = {}
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        for m in re.finditer(r'^show_doc\(\s*([\w.]+)', ''.join(c['source']), re.M):
            out[m.group(1)] = out.get(m.group(1), False) or bool(c.get('outputs'))
    return out


def missing_show_docs(proc_dir, root=ROOT) -> dict[str, list[str]]:
    "notebook -> public functions/classes of its module with no executed show_doc cell in the processed notebook."
    res = {}
    for nb in sorted((Path(root)/'nbs').glob('*.ipynb')):
        mod = default_exp(nb)
        if not mod: continue
        f = Path(root)/PACKAGE/(mod.replace('.', '/') + '.py')
        if not f.exists(): res[nb.name] = [f'<module {f.name} not exported>']; continue
        p = Path(proc_dir)/nb.name
        shown = show_doc_calls(json.loads(p.read_text())) if p.exists() else {}
        miss = [o for o in public_defs(f) if not shown.get(o)]
        if miss or not p.exists(): res[nb.name] = miss or ['<not processed>']
    return res


# ------------------------------------------------------------------------------------------------------- HTML
_FM = re.compile(r'^---\n(.*?)\n---\s*$', re.S)


def _page_title(nb) -> tuple[str, str]:
    "(title, description) from nbdev's frontmatter raw cell or the first `# heading` / `> description` markdown."
    for c in nb.cells:
        src = c.source if isinstance(c.source, str) else ''.join(c.source)
        m = _FM.match(src.strip()) if c.cell_type == 'raw' else None
        if m:
            fm = yaml.safe_load(m.group(1)) or {}
            return str(fm.get('title', '')), str(fm.get('description', ''))
        if c.cell_type == 'markdown':
            t = re.search(r'^#\s+(.+)$', src, re.M); d = re.search(r'^>\s*(.+)$', src, re.M)
            if t: return t.group(1).strip(), d.group(1).strip() if d else ''
    return '', ''


def _prepare(nb):
    "What Quarto would do with the processed notebook: frontmatter -> title, `#|` directives honoured and hidden."
    import nbformat
    title, desc = _page_title(nb)
    cells = []
    for c in nb.cells:
        if c.cell_type == 'raw' and _FM.match(c.source.strip()):
            c = nbformat.v4.new_markdown_cell(f'# {title}\n\n' + (f'> {desc}\n' if desc else ''))
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            dirs = {}
            for l in lines:
                m = re.match(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$', l)
                if m: dirs[m.group(1)] = m.group(2).strip().lower()
            if 'hide' in dirs or dirs.get('include') == 'false': continue
            tags = set(c.metadata.get('tags', []))
            if dirs.get('echo') == 'false': tags.add('remove_input')
            if dirs.get('output') == 'false': tags.add('remove_output')
            c.metadata['tags'] = sorted(tags)
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if not c.source and not c.outputs: continue
            for o in c.outputs:                                   # Quarto's link attributes: `[source](url){target=..}`
                md = o.get('data', {}).get('text/markdown')
                if md: o['data']['text/markdown'] = re.sub(r'\]\(([^)\s]+)\)\{[^}\n]*\}', r'](\1)', md)
        cells.append(c)
    nb.cells = cells
    nb.metadata.pop('widgets', None)
    return nb, title


_CSS = """<style>
body { margin: 0; }
nav.mtk-sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto; padding: 14px 12px;
  background: #f4f6f8; border-right: 1px solid #dde2e6; font: 13.5px/1.45 system-ui, sans-serif; box-sizing: border-box; }
nav.mtk-sidebar .site { display: block; font-size: 17px; font-weight: 600; color: #2780e3; margin-bottom: 10px; }
nav.mtk-sidebar .sec { font-weight: 600; color: #333; margin: 12px 0 3px; text-transform: uppercase; font-size: 11.5px; }
nav.mtk-sidebar a { display: block; color: #444; text-decoration: none; padding: 2px 6px; border-radius: 3px; }
nav.mtk-sidebar a.active { background: #2780e3; color: #fff; }
body > main, body > .jp-Notebook { margin-left: 260px !important; }
.jp-RenderedMarkdown pre { background: #f5f6f7; padding: 6px 10px; margin: 6px 0 10px; border-radius: 3px; }
</style>"""


def _sidebar_html(entries, titles, current, depth, site_title):
    up = '../' * depth
    out = [f'<nav class="mtk-sidebar"><a class="site" href="{up}index.html">{html.escape(site_title)}</a>']
    last = object()
    for sec, f in entries:
        if sec != last and sec: out.append(f'<div class="sec">{html.escape(sec)}</div>')
        last = sec
        href = up + re.sub(r'\.ipynb$', '.html', f)
        cls = ' class="active"' if f == current else ''
        out.append(f'<a{cls} href="{href}">{html.escape(titles.get(f) or f)}</a>')
    return '\n'.join(out + ['</nav>'])


def render_site(proc_dir, out_dir, sidebar_yml=None) -> dict[str, Path]:
    "Render every notebook of the processed site to `out_dir` (same layout, `.html`), each page with the sidebar."
    import nbformat
    from nbconvert import HTMLExporter
    proc_dir, out_dir = Path(proc_dir), Path(out_dir)
    entries = sidebar_entries(sidebar_yml or proc_dir/'sidebar.yml')
    files = sorted(str(p.relative_to(proc_dir)) for p in proc_dir.rglob('*.ipynb') if not any(
        part.startswith(('.', '_')) for part in p.relative_to(proc_dir).parts))
    nbs, titles = {}, {}
    for f in files:
        nb, t = _prepare(nbformat.read(proc_dir/f, as_version=4))
        nbs[f], titles[f] = nb, t
    site_title = (yaml.safe_load((proc_dir/'_quarto.yml').read_text()).get('website', {}).get('title')
                  if (proc_dir/'_quarto.yml').exists() else PACKAGE) or PACKAGE
    from traitlets.config import Config
    cfg = Config({'TagRemovePreprocessor': {'enabled': True, 'remove_input_tags': ['remove_input'],
                                            'remove_cell_tags': ['remove_cell'],
                                            'remove_all_outputs_tags': ['remove_output']}})
    exp = HTMLExporter(config=cfg, template_name='lab', embed_images=True, exclude_input_prompt=True,
                       exclude_output_prompt=True)
    pages = {}
    for f, nb in nbs.items():
        body, _ = exp.from_notebook_node(nb, resources={'metadata': {'path': str(proc_dir/Path(f).parent)}})
        body = re.sub(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', '', body)   # offline: no CDN scripts
        body = re.sub(r'<title>.*?</title>', f'<title>{html.escape(titles[f] or f)}</title>', body, count=1, flags=re.S)
        body = body.replace('</head>', _CSS + '\n</head>', 1)
        nav = _sidebar_html(entries, titles, f, len(Path(f).parts) - 1, site_title)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + '\n' + nav, body, count=1)
        dest = out_dir/re.sub(r'\.ipynb$', '.html', f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(body)
        pages[f] = dest
    return pages


# ---------------------------------------------------------------------------------------------------- Chromium
def find_chromium() -> str | None:
    "The Chromium/Chrome binary: $MTK_CHROMIUM, else the first of chromium, chromium-browser, google-chrome on PATH."
    cands = [os.environ.get('MTK_CHROMIUM', ''), 'chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']
    for c in cands:
        if c and shutil.which(c): return shutil.which(c)
    return None


def _chromium(chromium, profile, *args, timeout=120):
    cmd = [chromium, '--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run',
           '--disable-extensions', '--disable-dev-shm-usage', f'--user-data-dir={profile}', *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def capture(chromium, html_path, png_path, size=(1280, 2000)) -> str:
    "Screenshot `html_path` to `png_path` with headless Chromium and return its rendered DOM (`--dump-dom`)."
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix='mtk-chromium-') as prof:   # own profile: other Chromiums may be running
        r = _chromium(chromium, prof, f'--screenshot={Path(png_path).resolve()}', f'--window-size={size[0]},{size[1]}', url)
        if not Path(png_path).exists():
            raise RuntimeError(f'chromium wrote no screenshot of {html_path} (rc {r.returncode}):\n{r.stderr[-3000:]}')
        d = _chromium(chromium, prof, '--dump-dom', f'--window-size={size[0]},{size[1]}', url)
    if d.returncode != 0 or '<html' not in d.stdout:
        raise RuntimeError(f'chromium --dump-dom failed on {html_path} (rc {d.returncode}):\n{d.stderr[-3000:]}')
    return d.stdout


def png_stats(png_path) -> dict:
    "Size, grey-level standard deviation and fraction of non-white pixels of a screenshot (a blank page has ~0 of both)."
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(png_path).convert('L'), dtype=np.float32)
    return {'width': a.shape[1], 'height': a.shape[0], 'std': float(a.std()), 'ink': float((a < 200).mean())}


def dom_stats(dom) -> dict:
    "Counts of embedded PNG figures, tables and headings in a rendered DOM."
    return {'png_figures': len(re.findall(r'<img[^>]*src="data:image/png;base64,', dom)),
            'tables': len(re.findall(r'<table\b', dom)), 'h1': len(re.findall(r'<h1\b', dom)),
            'sidebar': 'mtk-sidebar' in dom}


# -------------------------------------------------------------------------------------------------- pipeline
def build(root=ROOT, work=None, screenshot_dir=None, pages=PAGES, chromium=None, n_workers=2) -> dict:
    """The whole pipeline on a copy of `root` in `work`: nbdev_proc_nbs, pre-render, HTML, screenshots + DOM of `pages`.
    Returns a report (timings, proc output, page stats); raises only if a step cannot run at all."""
    root = Path(root)
    work = Path(work or tempfile.mkdtemp(prefix='mtk-docs-'))
    shots = Path(screenshot_dir or os.environ.get('MTK_SCREENSHOT_DIR') or root/'_screenshots')
    rep, t = {'work': str(work), 'screenshot_dir': str(shots), 'timings': {}}, time.perf_counter()
    def lap(k):
        nonlocal t
        now = time.perf_counter(); rep['timings'][k] = round(now - t, 1); t = now

    project = copy_project(root, work/'project'); lap('copy')
    r = run_proc_nbs(project, n_workers=n_workers)
    rep['proc'] = {'rc': r.returncode, 'output': r.stdout + r.stderr}; lap('nbdev_proc_nbs')
    proc = project/'_proc'
    rep['proc_dir'] = str(proc)
    if r.returncode != 0: return rep
    rep['pre_render'] = run_pre_render(proc); lap('pre_render')
    html_pages = render_site(proc, work/'html')
    rep['html'] = {k: str(v) for k, v in html_pages.items()}; lap('nbconvert')
    chromium = chromium or find_chromium()
    rep['chromium'] = chromium
    if not chromium: return rep
    shots.mkdir(parents=True, exist_ok=True)
    rep['pages'] = {}
    for name, f in pages.items():
        png = shots/f'{name}.png'
        if png.exists(): png.unlink()
        dom = capture(chromium, html_pages[f], png)
        (shots/f'{name}.dom.html').write_text(dom)
        rep['pages'][name] = {'notebook': f, 'png': str(png), **png_stats(png), **dom_stats(dom)}
    lap('chromium')
    rep['timings']['total'] = round(sum(rep['timings'].values()), 1)
    (shots/'report.json').write_text(json.dumps({k: v for k, v in rep.items() if k != 'proc'} |
                                                {'proc_rc': rep['proc']['rc']}, indent=1))
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    b = sub.add_parser('build'); b.add_argument('--out'); b.add_argument('--work')
    sub.add_parser('tutorials')
    c = sub.add_parser('check-imports'); c.add_argument('--fix', action='store_true'); c.add_argument('--nbs', default=str(ROOT/'nbs'))
    a = ap.parse_args(argv)
    if a.cmd == 'tutorials': return copy_tutorials('.')
    if a.cmd == 'check-imports':
        bad = 0
        for nb in sorted(Path(a.nbs).glob('*.ipynb')):
            for i, line in mixed_import_cells(nb): print(f'{nb.name}: cell {i}: {line}'); bad += 1
            if a.fix:
                for i in split_imports(nb, write=True): print(f'{nb.name}: cell {i}: nested imports left, fix by hand')
        return 1 if bad and not a.fix else 0
    rep = build(work=a.work, screenshot_dir=a.out)
    print(rep['proc']['output'][-5000:])
    print(json.dumps({k: v for k, v in rep.items() if k not in ('proc', 'html')}, indent=1))
    return 0 if rep['proc']['rc'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
