"""Papermill runs of every tutorial through `mtk quickstart`, the README's main job (run once, checked by several tests).

`mtk quickstart` runs the tutorials with `smoke=True, quick=True`: the short runs (under 5 minutes on 2 cores, two
tutorials at a time, each kernel on one thread) that a new user sees first; `mtk quickstart --full` (`quick=False`)
gives the longer smoke runs. Every check below holds for the quick runs; the values measured here are quoted beside
each check, and the margins allow for other CPUs' floating point.
This is the only place CI runs all the tutorials (tests/test_wheel.py runs one, from the installed wheel). The module is
one xdist group, so under `pytest -n 2 --dist loadgroup` the quickstart fixture runs once, on one worker.
"""
import json
from pathlib import Path

import nbformat
import pytest

from conftest import run_mtk

pytestmark = pytest.mark.xdist_group('quickstart')


# tutorials whose checks need the longer smoke runs (`mtk quickstart --full`): none since every quick run passes them
FULL = ()


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory, root):
    "`mtk quickstart` (quick) for most tutorials and `--full` for FULL, into one folder with one metrics.json."
    out = tmp_path_factory.mktemp('quickstart')/'out'
    names = sorted(p.stem for p in (root/'tutorials').glob('*.ipynb'))
    runs, metrics = [], {}
    for flags, group in (((), [t for t in names if t not in FULL]), (('--full',), [t for t in names if t in FULL])):
        if not group: continue
        res = run_mtk('quickstart', *flags, '-o', out, *[a for t in group for a in ('--only', t)], timeout=2400)
        metrics.update(json.loads((out/'metrics.json').read_text()))     # each call writes the metrics of its own runs
        runs.append(res)
    (out/'metrics.json').write_text(json.dumps(metrics, indent=2))
    res = runs[0]
    res.stdout = ''.join(r.stdout for r in runs)
    return out, res


def test_quickstart_runs_every_tutorial(quickstart, root):
    out, res = quickstart
    tutorials = sorted(p.stem for p in (root/'tutorials').glob('*.ipynb'))
    assert tutorials, 'no tutorials found'
    metrics = json.loads((out/'metrics.json').read_text())
    assert sorted(metrics) == tutorials
    for t in tutorials:
        nb = nbformat.read(out/f'{t}.ipynb', as_version=4)
        errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.get('output_type') == 'error']
        assert not errors, f'{t}: {errors}'
        assert any((out/t).rglob('*.png')), f'{t} wrote no figure'
        assert f"wrote {out/f'{t}.ipynb'}" in res.stdout
    assert 'everything is in' in res.stdout


def test_focus_tutorial_reproduces_stain_dependence(quickstart):
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['01_stain_dependent_focus']
    srcc = m['srcc_per_stain']
    assert len(srcc) >= 4 and all(v < 0 for v in srcc.values())          # SF falls with rank for every stain
    assert max(srcc.values()) - min(srcc.values()) > 0.1                   # ... but not equally: the stains differ
    assert m['smoke'] is True


def test_quickstart_only_and_bad_folder(tmp_path):
    res = run_mtk('quickstart', '--only', 'no_such_tutorial', '-o', tmp_path, check=False)
    assert res.returncode == 2 and 'no tutorial notebooks' in res.stderr


def test_bench_tutorial_forgetting_and_merging(quickstart):
    "Micro-Bench tutorial: the specialist gains in its domain and forgets elsewhere; a middle alpha repairs much of it (Fig. 5)."
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['05_micro_bench']
    sw = {float(a): v for a, v in m['sweep'].items()}
    base, spec = sw[0.0], sw[1.0]
    assert spec['in_domain'] > base['in_domain']                  # fine-tuning helped where it was trained
    assert spec['elsewhere'] < base['elsewhere'] - 0.2            # ... and forgot the rest of microscopy
    mid = sw[0.5]
    assert mid['in_domain'] >= base['in_domain'] and mid['elsewhere'] > spec['elsewhere'] + 0.2
    rand = m['per_group']['Random']
    for g, v in rand.items():                                     # the baseline's accuracy is consistent with chance
        assert abs(v['pooled'] - v['chance']) < 3 * v['pooled_ci'] + 1e-9, (g, v)
    assert all(v['pooled_ci'] > 0 for r in m['per_group'].values() for v in r.values())


def test_bench_tutorial_saved_merge_reproduces_sweep(quickstart):
    "The merged model the tutorial saved, loaded back from its folder, scores exactly what the sweep measured at that alpha."
    from microscopy_toolkit.bench.data import load_ubench
    from microscopy_toolkit.bench.evaluate import evaluate
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['05_micro_bench']
    d = out/'05_micro_bench'
    res = evaluate(d/'merged_model', load_ubench(d/'ubench_sample'), group='perception', n_resamples=1000, show_progress=False)
    assert res.items.correct.mean() == m['sweep'][str(float(m['best_alpha']))]['all']


def test_fluoclip_tutorial_learns_far_above_chance(quickstart):
    "Tutorial 02 (tiny backbone from scratch, synthetic stain stacks, CPU): FluoCLIP, OrdinalCLIP and CE all learn the focus level."
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['02_fluoclip']
    assert m['smoke'] is True and m['chance_accuracy'] == 0.1
    # uniform guessing: accuracy 0.10, SRCC 0, MAE 3.3; measured here: FluoCLIP 0.50 / 0.93 / 0.76, OrdinalCLIP 0.25 / 0.87 / 1.11,
    # CE 0.20 / 0.76 / 1.48 (margins below allow for other CPUs' floating point taking training elsewhere)
    for method in ('fluoclip', 'ordinalclip', 'ce'):
        r = m['methods'][method]
        assert r['accuracy'] > 1.5 * m['chance_accuracy'], (method, r)
        assert r['mae'] < 1.7 and r['srcc'] > 0.65, (method, r)
    assert m['methods']['fluoclip']['accuracy'] > 2.5 * m['chance_accuracy'] and m['methods']['fluoclip']['srcc'] > 0.8
    d = out/'02_fluoclip'
    assert (d/'runs'/'fluoclip'/'seed0'/'model.pt').exists() and (d/'confusion_and_agreement.png').exists()


def test_matching_tutorial_heads_learn_and_baselines_are_sane(quickstart):
    "Tutorial 03 (tiny random SD, synthetic cells, CPU): the heads and the projector learn; the classical baselines work."
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['03_microscopy_matching']
    assert m['smoke'] is True and m['sd'] == 'tiny'
    s, c = m['seg'], m['count']
    # measured here (quick): BCE 0.36 -> 0.15, best validation AP@0.5 0.36, test AP@0.5 0.32 (Otsu + watershed 0.84);
    # an untrained head scores 0 (see nbs/24): margins allow for other CPUs' floating point
    assert s['last_loss'] < 0.5 * s['first_loss'], s
    assert s['best_val_ap50'] > 0.25 and s['ap50'] > 0.2, s
    assert s['baseline_ap50'] > 0.6, s                      # the classical baseline is implemented right
    assert c['best_val_mae'] < 0.7 * c['first_val_mae'], c   # measured 12.2 -> 6.2
    assert list(m['box_study']) == ['precise', 'shift', 'size', 'aspect'] and all(0 <= v <= 1 for v in m['box_study'].values())
    assert m['attn_loss'][-1] < m['attn_loss'][0]           # the projector's cross-attention supervision is learned
    d = out/'03_microscopy_matching'
    assert (d/'seg_A'/'best.pt').exists() and (d/'attention_maps.png').exists() and (d/'box_imprecision.png').exists()


def test_tracking_tutorial_links_lineages_and_scores_every_method(quickstart):
    "Tutorial 04 (tiny random SD, synthetic time-lapse with divisions, CPU): the linkage head learns the lineage; every method is scored."
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['04_tracking']
    t = m['table']
    assert set(t) == {'matching', 'matching masks + overlap linker', 'Otsu + watershed + overlap linker',
                      'GT masks + linkage head', 'GT masks + overlap linker'}
    # measured here: linkage head on GT masks TRA 0.989 / LNK 0.913 (overlap linker 0.993 / 0.938); validation edge F1 0.99
    gl = t['GT masks + linkage head']
    assert gl['SEG'] == 1.0 and gl['DET'] == 1.0 and gl['TRA'] > 0.9 and gl['LNK'] > 0.75, gl
    assert t['GT masks + overlap linker']['LNK'] > 0.8
    assert m['link_val_f1'] > 0.8 and m['link_last_loss'] < 0.3 * m['link_first_loss']
    assert t['matching']['TRA'] > 0.2 and t['Otsu + watershed + overlap linker']['TRA'] > 0.6, t   # measured 0.51 and 0.90
    assert m['test_divisions'] > 0
    d = out/'04_tracking'
    assert (d/'tracker'/'tracker.pt').exists() and (d/'results'/'matching'/'res_track.txt').exists() and (d/'tracks.png').exists()


def test_qc_tutorial_recovers_the_injected_faults(quickstart):
    "Tutorial 06 (synthetic 384-well plate, Dask): the flags find the injected defocus, saturation and empty fields."
    out, _ = quickstart
    m = json.loads((out/'metrics.json').read_text())['06_screen_qc']
    assert m['smoke'] is True and m['fields'] == 384 * 2, m            # every field of both stains was measured
    rec = m['recovery']
    assert set(rec) == {'defocus', 'saturation', 'empty'}, rec
    # measured here: precision and recall 1.0 for every fault; the flags are median - 3 MAD and fixed limits
    for fault, r in rec.items():
        assert r['precision'] > 0.9 and r['recall'] > 0.9, (fault, r)
    d = out/'06_screen_qc'
    assert (d/'qc'/'results.parquet').exists() and (d/'qc'/'report.html').exists(), sorted(p.name for p in d.rglob('*'))
