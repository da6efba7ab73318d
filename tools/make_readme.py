"""README.md is generated from nbs/index.ipynb: `python tools/make_readme.py` (from the repository root).

Markdown cells are copied verbatim; code cells become ```python blocks (nbdev's `#|` directive lines dropped, and
`hide` / `include: false` / `echo: false` / `output: false` honoured); stored text outputs become plain ``` blocks,
markdown outputs are copied, and figures are written to images/readme_<section>.png and linked. tests/test_repo.py
checks that the committed README.md and images are exactly what this produces.
(`nbdev_readme` would do this through Quarto, which is not installed everywhere; this needs nothing but the notebook.)
"""
from __future__ import annotations

import base64, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsite import directives  # noqa: E402  (nbdev's own parse of `#|` lines)
INDEX = ROOT/'nbs'/'index.ipynb'
IMAGE_DIR = 'images'


def _src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


def _text(v) -> str:
    return ''.join(v) if isinstance(v, list) else v


def _slug(s) -> str:
    return re.sub(r'[^a-z0-9]+', '-', s.lower()).strip('-') or 'figure'


def readme_from_index(nb_path=INDEX, images: dict | None = None) -> str:
    """The README text for the notebook at `nb_path`. Figures are linked as images/readme_<section>.png (numbered
    when a section has several); pass a dict as `images` to receive {relative path: PNG bytes} for them."""
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    blocks, section, used = [], 'index', {}
    images = {} if images is None else images
    for cell in nb['cells']:
        src = _src(cell)
        if cell['cell_type'] == 'markdown':
            for h in re.findall(r'^#{1,3}\s+(.+?)\s*$', src, re.M): section = h
            if src.strip(): blocks.append(src.strip('\n'))
            continue
        if cell['cell_type'] != 'code': continue
        d = directives(src)
        if 'hide' in d or d.get('include') == ['false'] or 'default_exp' in d: continue
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')
        if code and d.get('echo') != ['false']: blocks.append(f'```python\n{code}\n```')
        if d.get('output') == ['false']: continue
        for o in cell.get('outputs', []):
            t = o['output_type']
            if t == 'error': raise ValueError(f"{nb_path}: a code cell stored an error: {o.get('ename')}: {o.get('evalue')}")
            if t == 'stream':
                if o.get('name') == 'stdout' and _text(o['text']).strip():
                    blocks.append(f"```\n{_text(o['text']).rstrip()}\n```")
                continue
            data = o.get('data', {})
            if 'image/png' in data:
                k = used[section] = used.get(section, 0) + 1
                rel = f"{IMAGE_DIR}/readme_{_slug(section)}{'' if k == 1 else f'_{k}'}.png"
                images[rel] = base64.b64decode(_text(data['image/png']))
                blocks.append(f'![{section}]({rel})')
            elif 'text/markdown' in data: blocks.append(_text(data['text/markdown']).strip('\n'))
            elif 'text/plain' in data: blocks.append(f"```\n{_text(data['text/plain']).rstrip()}\n```")
    return '\n\n'.join(blocks) + '\n'


def write_readme(root=ROOT, nb_path=None) -> list[Path]:
    "Write README.md and its images from the index notebook; returns the paths written."
    root = Path(root)
    images = {}
    text = readme_from_index(nb_path or root/'nbs'/'index.ipynb', images)
    out = [root/'README.md']
    out[0].write_text(text, encoding='utf-8')
    for rel, data in images.items():
        p = root/rel; p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(data); out.append(p)
    return out


if __name__ == '__main__':
    for p in write_readme(ROOT, Path(sys.argv[1]) if len(sys.argv) > 1 else None): print('wrote', p.relative_to(ROOT))
