"""The package as a user meets it: build the wheel, install it into a fresh virtual environment, use `mtk` from outside the repo.

One test on purpose (not one per stage): the wheel and the venv cost minutes and ~6.5 GB (torch with its CUDA wheels), and a
single function keeps that to once per run, also under pytest-xdist. The stages, in order:

1. build: `pip wheel <copy of the working tree> --no-deps --no-build-isolation` (offline: setuptools/wheel of the running
   Python). The tree (git's tracked + untracked-not-ignored files) is copied first, so the build neither writes `build/` or
   `*.egg-info` into the shared checkout nor picks up a stale egg-info's file list. The wheel must hold every module of
   `microscopy_toolkit/`, every other file the package ships (package data), `microscopy_toolkit/tutorials/*.ipynb` (what
   `mtk quickstart` runs), the `mtk` entry point and settings.ini's requirements.
2. venv + install: a fresh `python -m venv --system-site-packages`, and `pip install --no-deps --force-reinstall
   <wheel>` into it: the package goes into the venv, its dependencies come from the Python running the tests.
   Then, in the venv, every `Requires-Dist` of the wheel must be installed at a version its specifier allows (the check
   pip's resolver makes). `microscopy_toolkit.__file__` in the venv must lie in the venv's site-packages, not in this
   checkout (the system Python's editable install must not win).
   Why not a fully isolated venv: pip then installs torch with its CUDA wheels (~6.5 GB), and CI measured 317 s for this
   test, a third of the 15-minute budget, for a check that tests/test_repo.py makes statically (every third-party import of
   the package is a declared requirement). The venv is made `--without-pip` and the running pip installs into it
   (`pip --python`), which saves the minute ensurepip takes on a busy machine. MTK_WHEEL_ISOLATED=1 still runs the
   isolated install, pip resolving every dependency as for a user (~2.5-5 min).
3. from a temporary folder outside the repo, with MPLBACKEND=Agg MTK_PROGRESS=0 and PATH starting with venv/bin: import every
   module and print the version; `mtk --help` and each pillar's `--help` list the pillars and verbs; a synthetic Hoechst
   z-stack (focus at plane 13 of 21) written with the package's own writer, scored by `mtk focus score`, must have its best
   plane at 13; papermill in the venv must start kernel `python3` with the venv's interpreter (ipykernel is a requirement,
   so the venv carries its own `python3` kernelspec and jupyter prefers it inside a venv; no global kernelspec is touched;
   JUPYTER_PATH / JUPYTER_PREFER_ENV_PATH are removed from the environment of the probe; `run_tutorials` itself resolves
   `python3` to its own interpreter whatever they say, tested in nbs/60_cli.ipynb);
   `microscopy_toolkit.cli.tutorials_dir()` must find all packaged tutorials in the venv's site-packages; and
   `mtk quickstart --only 01_stain_dependent_focus` must execute that packaged tutorial (the fastest, seconds) without
   errors and write metrics.json with its entry. One tutorial is enough here: this run checks what only an installed
   wheel can break (the packaged notebooks are found, papermill's kernel is the venv's Python, the package imports
   from site-packages); tests/test_tutorials.py runs every tutorial, from the checkout, with checks on their numbers,
   so CI runs each tutorial once. MTK_WHEEL_FULL_QUICKSTART=1 runs every packaged tutorial here too (minutes).
4. every command, its wall time, exit status and output are printed (see them with `pytest -s`) and appended to the file
   named by $MTK_WHEEL_LOG when set.

Failures after the install are collected and reported together, so one broken stage does not hide the others.
Set MTK_WHEEL_KEEP=1 to keep the venv and outputs (their folder is printed); by default they are deleted afterwards.
"""
import json, os, shlex, shutil, subprocess, sys, time, zipfile
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = 'microscopy_toolkit'
# `mtk quickstart --only` these (see the module docstring); with MTK_WHEEL_FULL_QUICKSTART=1 all run
QUICKSTART_ONLY = ('01_stain_dependent_focus',)
# environment variables that would let the checkout or another Python leak into the venv's processes
_LEAKY = ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONUSERBASE', 'VIRTUAL_ENV', 'CONDA_PREFIX', '__PYVENV_LAUNCHER__',
          'JUPYTER_PATH', 'JUPYTER_PREFER_ENV_PATH')


class _Log:
    "Print each command with its wall time, exit status and output; also append to $MTK_WHEEL_LOG when set."
    def __init__(self):
        self.path = Path(os.environ['MTK_WHEEL_LOG']).resolve() if os.environ.get('MTK_WHEEL_LOG') else None
        if self.path: self.path.parent.mkdir(parents=True, exist_ok=True)
        self.times = {}

    def __call__(self, text=''):
        print(text, flush=True)
        if self.path:
            with open(self.path, 'a', encoding='utf-8') as f: f.write(text + '\n')

    def run(self, cmd, *, cwd, env=None, timeout=600, stage=None, drop=None):
        cmd = [str(c) for c in cmd]
        self(f"\n$ cd {cwd} && {shlex.join(cmd)}")
        t0 = time.time()
        try: res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self(f"[timed out after {timeout} s]\n{e.stdout or ''}{e.stderr or ''}"); raise
        dt = time.time() - t0
        if stage: self.times[stage] = dt
        out = (res.stdout + ('\n' if res.stdout and res.stderr else '') + res.stderr).rstrip()
        if drop:                                        # noise such as pip's warnings about the local mirrors
            lines = out.splitlines(); kept = [l for l in lines if drop not in l]
            out = '\n'.join(kept) + (f"\n[{len(lines) - len(kept)} lines containing {drop!r} left out]" if len(kept) < len(lines) else '')
        self(out)
        self(f"[exit {res.returncode}, {dt:.1f} s]")
        res.seconds = dt
        return res


def _source_files() -> list[Path]:
    "The working tree as git sees it: tracked files that still exist plus untracked files that are not ignored."
    try:
        out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                             capture_output=True, check=True).stdout.decode()
        files = [Path(p) for p in out.split('\0') if p]
    except (OSError, subprocess.CalledProcessError):                     # not a git checkout: everything but build outputs
        skip = {'.git', 'build', 'dist', '__pycache__', '.pytest_cache', '_docs', '_proc', 'mtk_output', '.venv'}
        files = [p.relative_to(ROOT) for p in ROOT.rglob('*') if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
                 and not p.relative_to(ROOT).parts[0].endswith('.egg-info')]
    return [p for p in files if (ROOT/p).is_file()]


def _notebook(path: Path, code: str):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'id': 'probe', 'metadata': {}, 'outputs': [], 'source': code}],
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'},
                       'language_info': {'name': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def _nb_errors(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb['cells'] if c['cell_type'] == 'code'
            for o in c.get('outputs', []) if o.get('output_type') == 'error']


def test_wheel_as_a_user_installs_it(tmp_path_factory):
    log = _Log()
    base = tmp_path_factory.mktemp('wheel')
    keep = os.environ.get('MTK_WHEEL_KEEP', '') not in ('', '0')
    log(f"=== test_wheel: {time.strftime('%Y-%m-%d %H:%M:%S')}, Python {sys.version.split()[0]}, work folder {base}"
        + (f", log {log.path}" if log.path else ''))
    try: _check_wheel(log, base)
    finally:
        if log.times: log("\n=== wall times: " + ', '.join(f"{k} {v:.1f} s" for k, v in log.times.items()))
        if keep: log(f"kept {base}")
        else: shutil.rmtree(base, ignore_errors=True)


def _check_wheel(log, base: Path):
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8'); cfg = cfg['DEFAULT']
    version = cfg['version']

    # --- 1. build the wheel from a copy of the working tree -----------------------------------------------------------
    src, dist = base/'src', base/'dist'
    files = _source_files()
    for p in files:
        (src/p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/p, src/p)
    log(f"copied {len(files)} files of the working tree {ROOT} to {src}")
    res = log.run([sys.executable, '-m', 'pip', 'wheel', src, '--no-deps', '--no-build-isolation', '-w', dist],
                  cwd=base, timeout=600, stage='build')
    wheels = sorted(dist.glob(f'{PKG}-*.whl'))
    assert res.returncode == 0 and len(wheels) == 1, f"building the wheel failed:\n{res.stdout}\n{res.stderr}"
    wheel = wheels[0]
    assert wheel.name == f'{PKG}-{version}-py3-none-any.whl', wheel.name

    with zipfile.ZipFile(wheel) as z: names = set(z.namelist()); read = {n: z.read(n).decode() for n in names if n.endswith(('entry_points.txt', 'METADATA'))}
    log(f"\n{wheel.name} ({wheel.stat().st_size / 1e3:.0f} kB), {len(names)} files:\n  " + '\n  '.join(sorted(names)))
    info = f'{PKG}-{version}.dist-info/'
    stray = sorted(n for n in names if not n.startswith((PKG + '/', info)))
    assert not stray, f"the wheel ships files outside {PKG}/: {stray}"
    pkg_files = [p for p in files if p.parts[0] == PKG and '__pycache__' not in p.parts and p.suffix not in ('.pyc', '.pyo')]
    modules = [p for p in pkg_files if p.suffix == '.py']
    assert len(modules) > 10, modules
    missing = sorted(p.as_posix() for p in pkg_files if p.as_posix() not in names)   # modules and any package data
    assert not missing, f"files of {PKG}/ missing from the wheel: {missing}"
    tutorials = sorted(p.stem for p in (ROOT/'tutorials').glob('*.ipynb'))
    assert tutorials, 'no tutorials in the checkout'
    shipped = sorted(Path(n).stem for n in names if n.startswith(f'{PKG}/tutorials/') and n.endswith('.ipynb'))
    assert shipped == tutorials, f"{PKG}/tutorials/ in the wheel holds {shipped}, the checkout's tutorials/ {tutorials}"
    ep = read[info + 'entry_points.txt']
    assert 'mtk = microscopy_toolkit.cli:main' in ep, ep
    reqs = [l.split(':', 1)[1].strip() for l in read[info + 'METADATA'].splitlines() if l.startswith('Requires-Dist:')]
    for r in cfg['requirements'].split():
        assert any(x.replace(' ', '') == r.replace(' ', '') for x in reqs), f"requirement {r} missing from METADATA: {reqs}"

    # --- 2. a fresh venv with the wheel; its dependencies from the system site (isolated: resolved by pip) -------------
    venv = base/'venv'
    vpy, mtk = venv/'bin'/'python', venv/'bin'/'mtk'
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    t0 = time.time()
    isolated = os.environ.get('MTK_WHEEL_ISOLATED', '0') not in ('', '0')
    venv_args = [] if isolated else ['--system-site-packages', '--without-pip']     # the running pip installs, below
    res = log.run([sys.executable, '-m', 'venv', *venv_args, venv], cwd=base, timeout=300)
    assert res.returncode == 0, res.stderr
    pip = [vpy, '-m', 'pip'] if isolated else [sys.executable, '-m', 'pip', '--python', vpy]
    pip_args = [] if isolated else ['--no-deps', '--no-index', '--force-reinstall', '--disable-pip-version-check']
    res = log.run([*pip, 'install', *pip_args, wheel], cwd=base, env=env, timeout=1800,
                  drop='it is neither a file nor a directory')
    log.times['venv + install'] = time.time() - t0
    assert res.returncode == 0, f"pip install of the wheel failed:\n{res.stdout[-5000:]}\n{res.stderr[-5000:]}"
    site_flag = 'include-system-site-packages = ' + ('false' if isolated else 'true')
    assert site_flag in (venv/'pyvenv.cfg').read_text()
    res = log.run([vpy, '-c', "from importlib.metadata import requires, version\nfrom packaging.requirements import Requirement\n"
                   f"reqs = [Requirement(r) for r in requires('{PKG}')]\n"
                   "bad = [f'{r} (found {version(r.name)})' for r in reqs if not r.marker and not r.specifier.contains("
                   "version(r.name), prereleases=True)]\nprint(len(reqs), 'requirements;', 'unsatisfied:', bad)"],
                  cwd=base, env=env, stage='requirements')
    assert res.returncode == 0 and 'unsatisfied: []' in res.stdout, f"requirements of the wheel not met in the venv:\n{res.stdout}{res.stderr}"
    env.update(PATH=f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), MPLBACKEND='Agg', MTK_PROGRESS='0')

    work = base/'work'; work.mkdir()            # every command runs here, outside the repo
    problems = []
    def check(ok, what):
        if not ok: problems.append(what); log(f"!!! FAILED: {what}")
        return ok

    res = log.run([vpy, '-c', f"import sys, sysconfig, {PKG}; print({PKG}.__file__); print(sysconfig.get_paths()['purelib']); "
                   f"print(sys.prefix); print(any('{ROOT}' in p for p in sys.path))"], cwd=work, env=env, stage='where')
    assert res.returncode == 0, res.stderr
    where, purelib, prefix, root_on_path = res.stdout.split('\n')[:4]
    assert Path(where).resolve().is_relative_to(Path(purelib).resolve()), f"{PKG} imported from {where}, not from the venv's {purelib}"
    assert not Path(where).resolve().is_relative_to(ROOT), f"the checkout leaked into the venv: {where}"
    assert Path(prefix).resolve() == venv.resolve() and (root_on_path == 'False' or not isolated), res.stdout

    # --- 3. the user's commands --------------------------------------------------------------------------------------
    mods = sorted({p.with_suffix('').as_posix().replace('/', '.').removesuffix('.__init__') for p in modules} - {f'{PKG}._modidx'})
    res = log.run([vpy, '-c', f"import {', '.join(mods)}; from importlib.metadata import version; "
                   f"print({PKG}.__version__, version('{PKG}'), {len(mods)}, 'modules imported')"], cwd=work, env=env, stage='import', timeout=600)
    check(res.returncode == 0 and res.stdout.split()[:2] == [version, version], f"importing every module / version {version}")

    res = log.run([mtk, '--version'], cwd=work, env=env)
    check(res.returncode == 0 and version in res.stdout, 'mtk --version')
    res = log.run([mtk, '--help'], cwd=work, env=env, stage='mtk --help')
    check(res.returncode == 0 and all(w in res.stdout for w in ('quickstart', 'focus', 'match', 'track', 'bench')), 'mtk --help lists the pillars')
    verbs = {'focus': ['score', 'analyze', 'train', 'predict'], 'match': ['segment', 'count', 'train'],
             'track': ['run', 'eval', 'train'], 'bench': ['eval', 'merge'], 'quickstart': ['--smoke', '--only', '--tutorials']}
    for pillar, vs in verbs.items():
        res = log.run([mtk, pillar, '--help'], cwd=work, env=env)
        check(res.returncode == 0 and all(v in res.stdout for v in vs), f"mtk {pillar} --help lists {vs}")

    z_focus, n_planes = 13, 21
    res = log.run([vpy, '-c', "import numpy as np\n"
                   "from microscopy_toolkit.synthetic.stains import stain_zstack\nfrom microscopy_toolkit.io import write_stack, read_zstack\n"
                   f"s = stain_zstack('Hoechst', n_planes={n_planes}, z_focus={z_focus}, size=96, seed=0)\n"
                   "s = np.clip(s * 4000, 0, 65535).astype(np.uint16)\nwrite_stack('stack.tif', s, axes='ZYX')\n"
                   "print('wrote stack.tif', read_zstack('stack.tif').shape, s.dtype)"], cwd=work, env=env, stage='write stack')
    if check(res.returncode == 0 and (work/'stack.tif').exists(), 'writing the synthetic z-stack'):
        res = log.run([mtk, 'focus', 'score', 'stack.tif', '-o', 'scores.csv'], cwd=work, env=env, stage='mtk focus score')
        if check(res.returncode == 0 and (work/'scores.csv').exists(), 'mtk focus score'):
            import pandas as pd
            df = pd.read_csv(work/'scores.csv')
            log(f"scores.csv ({len(df)} rows):\n{df.to_string(index=False)}")
            check(list(df.columns[:3]) == ['file', 'z', 'sf'] and 'best' in df.columns, f"scores.csv columns: {list(df.columns)}")
            check(df.z.tolist() == list(range(n_planes)), 'one row per plane')
            best = df.loc[df.best.astype(bool), 'z'].tolist()
            check(best == [z_focus] and f'best slice z={z_focus}' in res.stdout and 'wrote scores.csv' in res.stdout,
                  f"best plane {best} is the in-focus plane [{z_focus}]")

    # papermill's kernel `python3` must be the venv's interpreter (ipykernel's kernelspec in venv/share/jupyter/kernels)
    probe = work/'kernel_probe.ipynb'
    _notebook(probe, f"import sys, {PKG}; print(sys.prefix); print({PKG}.__file__)")
    res = log.run([vpy, '-c', "import papermill as pm\nfrom jupyter_client.kernelspec import KernelSpecManager\n"
                   "ks = KernelSpecManager().get_kernel_spec('python3'); print('kernelspec python3:', ks.resource_dir, ks.argv)\n"
                   "nb = pm.execute_notebook('kernel_probe.ipynb', 'kernel_probe_out.ipynb', kernel_name='python3', progress_bar=False)\n"
                   "print(*nb.cells[0].outputs[0]['text'].split(), sep='\\n')"], cwd=work, env=env, stage='kernel probe', timeout=300)
    lines = res.stdout.strip().splitlines()
    if check(res.returncode == 0 and len(lines) >= 3, 'papermill runs a notebook in the venv'):
        check(str(venv.resolve()) in lines[0], f"kernelspec python3 comes from the venv: {lines[0]}")
        check(Path(lines[-2]).resolve() == venv.resolve(), f"the kernel's sys.prefix {lines[-2]} is the venv")
        check(Path(lines[-1]).resolve().is_relative_to(Path(purelib).resolve()), f"the kernel imports {PKG} from the venv: {lines[-1]}")

    # the CLI must find every packaged tutorial in the venv (not in the checkout, not nowhere)
    res = log.run([vpy, '-c', "from microscopy_toolkit.cli import tutorials_dir; d = tutorials_dir(); print(d); "
                   "print(*sorted(p.stem for p in d.glob('*.ipynb')))"], cwd=work, env=env)
    if check(res.returncode == 0, 'microscopy_toolkit.cli.tutorials_dir() finds the packaged tutorials'):
        tdir, found = res.stdout.splitlines()[:2]
        check(Path(tdir).resolve().is_relative_to(Path(purelib).resolve()), f"tutorials_dir() {tdir} lies in the venv's site-packages")
        check(found.split() == tutorials, f"tutorials_dir() holds {found.split()}, the checkout {tutorials}")

    full = os.environ.get('MTK_WHEEL_FULL_QUICKSTART', '0') not in ('', '0')
    run = tutorials if full else [t for t in tutorials if t.startswith(QUICKSTART_ONLY)]
    assert run, f"none of the tutorials {tutorials} starts with {QUICKSTART_ONLY}"
    out = work/'mtk_output'
    cmd = [mtk, 'quickstart', '-o', out] + ([] if full else [a for t in run for a in ('--only', t)])
    res = log.run(cmd, cwd=work, env=env, stage='mtk quickstart', timeout=3600 if full else 1200)
    if check(res.returncode == 0, 'mtk quickstart exits 0'):
        check('everything is in' in res.stdout, 'quickstart says where everything is')
        metrics = json.loads((out/'metrics.json').read_text()) if (out/'metrics.json').exists() else {}
        log(f"metrics.json: {json.dumps({k: {'seconds': v.get('seconds'), 'keys': len(v)} for k, v in metrics.items()})}")
        check(sorted(metrics) == run, f"metrics.json has an entry for every tutorial run: {sorted(metrics)} vs {run}")
        for t in run:
            nb = out/f'{t}.ipynb'
            if check(nb.exists(), f'executed notebook {nb.name} written'):
                errs = _nb_errors(nb)
                check(not errs, f'{t} ran without errors: {errs}')
            check(len(metrics.get(t, {})) > 1, f"{t} wrote its own metrics (more than 'seconds')")
            check(f"wrote {nb}" in res.stdout, f'quickstart reports {nb.name}')

    assert not problems, f"{len(problems)} problem(s) with the installed wheel:\n- " + '\n- '.join(problems)
