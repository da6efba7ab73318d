"One-off: rewrite `from microscopy_toolkit.X import names` for names that moved modules (issue 14 merge)."
import ast, json, sys, re
from pathlib import Path
P = 'microscopy_toolkit.'
MOVES = {
 'core': {**{n: 'weights' for n in 'WeightSpec KNOWN_WEIGHTS resolve_weights _offline _from_hub_cache _from_hub'.split()},
          **{n: 'models.clip' for n in 'TINY_CLIP_CFG tiny_clip'.split()},
          **{n: 'models.sd' for n in 'tiny_sd_configs tiny_sd'.split()}},
 'focus.clip': {n: 'models.clip' for n in 'ClipBackbone build_clip load_clip_backbone _image_size _tokenizer word_token_ids tokenize'.split()},
 'bench.evaluate': {n: 'models.clip' for n in 'ContrastiveModel _HFCLIP _hf_clip _open_clip tiny_contrastive load_contrastive save_contrastive'.split()},
 'matching.sd': {n: 'models.sd' for n in 'SD14_UNET_CONFIG SD14_VAE_CONFIG SD14_TEXT_CONFIG SD14_SCHEDULER_CONFIG SD14_UNET_PARAMETERS sd14_unet SDTokenizer SDComponents _scheduler load_tiny_sd load_sd save_sd'.split()},
}
EXTRA = json.loads(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].startswith('{') else {}
for k, v in EXTRA.items():
    MOVES.setdefault(k, {}).update(v)

def fmt(mod, names, indent):
    line = f"{indent}from {P}{mod} import {', '.join(names)}"
    if len(line) <= 120:
        return [line]
    return [f"{indent}from {P}{mod} import ("] + [f"{indent}    {n}," for n in names] + [f"{indent})"]

def fix_source(src):
    lines = src.split('\n')
    # mask leading nbdev directives / magics that break ast
    masked = [('#' + l if l.lstrip().startswith(('%', '!')) else l) for l in lines]
    try:
        tree = ast.parse('\n'.join(masked))
    except SyntaxError:
        return src, 0
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(P) and node.level == 0:
            mod = node.module[len(P):]
            moves = MOVES.get(mod)
            if not moves or not any(a.name in moves for a in node.names):
                continue
            keep, moved = [], {}
            for a in node.names:
                nm = a.name if a.asname is None else f"{a.name} as {a.asname}"
                if a.name in moves:
                    moved.setdefault(moves[a.name], []).append(nm)
                else:
                    keep.append(nm)
            indent = re.match(r'\s*', lines[node.lineno - 1]).group(0)
            new = (fmt(mod, keep, indent) if keep else []) + [l for m, ns in moved.items() for l in fmt(m, ns, indent)]
            edits.append((node.lineno - 1, node.end_lineno, new))
    for a, b, new in sorted(edits, reverse=True):
        lines[a:b] = new
    return '\n'.join(lines), len(edits)

def fix_nb(p):
    nb = json.loads(p.read_text())
    n = 0
    for c in nb['cells']:
        if c['cell_type'] != 'code':
            continue
        s = ''.join(c['source'])
        new, k = fix_source(s)
        if k:
            c['source'] = new.splitlines(keepends=True)
            n += k
    if n:
        p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return n

root = Path('.')
files = [p for g in ('nbs/*.ipynb', 'tutorials/*.ipynb') for p in root.glob(g)]
pys = [p for g in ('tests/*.py', 'benchmarks/*.py', 'tools/*.py') for p in root.glob(g) if p.name != '_fix_imports.py']
for p in files:
    n = fix_nb(p)
    if n: print(p, n)
for p in pys:
    new, n = fix_source(p.read_text())
    if n:
        p.write_text(new)
        print(p, n)
