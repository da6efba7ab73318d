"""The `mtk` command line checked against the library on the same inputs. The verbs run in this process (`mtk_main`
calls `cli.main`: the same parser, verbs, messages and exit codes as the installed command, without an interpreter and
torch start-up per call); the installed command itself runs where a fresh process is the point (`--help` imports no
torch)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import spearmanr

from conftest import mtk_main, run_mtk
from microscopy_toolkit.io import write_stack
from microscopy_toolkit.focus.sharpness import spatial_frequency, brenner


def _stack(best, n=15, seed=0):
    rng = np.random.default_rng(seed)
    sharp = ndimage.gaussian_filter(rng.random((64, 64)), 1.0)
    return np.stack([ndimage.gaussian_filter(sharp, 0.2 + 0.5 * abs(z - best)) for z in range(n)]).astype(np.float32)


def test_help_lists_the_pillars():
    out = mtk_main('--help').stdout
    assert 'quickstart' in out and 'focus' in out
    assert 'score' in mtk_main('focus', '--help').stdout


def _child_cpu(run):
    "CPU seconds (user + system) that the child processes started by `run()` used: unlike wall time, load-independent."
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_help_loads_no_torch_and_is_fast():
    """Parsing `mtk --help` and every verb's parser imports no torch (issue 19): checked in a fresh interpreter; and the
    installed `mtk --help` costs less CPU than importing torch (CPU time of the child: a loaded machine stretches wall
    times, not the work done)."""
    import subprocess, sys
    code = ('import sys; from microscopy_toolkit.cli import build_parser; p = build_parser(); '
            'p.parse_args(["focus", "score", "x.tif"]); print("torch" in sys.modules)')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == 'False', res.stdout
    cpu_help = _child_cpu(lambda: run_mtk('--help'))
    cpu_torch = _child_cpu(lambda: subprocess.run([sys.executable, '-c', 'import torch'], check=True))
    assert cpu_help < cpu_torch and cpu_help < 3, (cpu_help, cpu_torch)     # measured here: 0.6 s against 3.5 s


def test_focus_score_folder_to_csv(tmp_path):
    stacks = {'a.tif': _stack(4), 'b.tif': _stack(10, seed=1)}
    for name, s in stacks.items(): write_stack(tmp_path/name, s, axes='ZYX')
    out = tmp_path/'scores.csv'
    res = mtk_main('focus', 'score', tmp_path, '-m', 'sf', '-m', 'brenner', '-o', out)
    assert f'wrote {out}' in res.stdout
    df = pd.read_csv(out)
    assert list(df.columns[:4]) == ['file', 'z', 'sf', 'brenner']
    for name, s in stacks.items():
        rows = df[df.file.str.endswith(name)]
        np.testing.assert_allclose(rows.sf.values, spatial_frequency(s), rtol=1e-6)
        np.testing.assert_allclose(rows.brenner.values, brenner(s), rtol=1e-6)
        assert rows.loc[rows.best, 'z'].tolist() == [int(np.argmax(spatial_frequency(s)))]
    assert sorted(df.loc[df.best, 'z']) == [4, 10]


def test_focus_score_bad_file_is_named_and_nothing_half_written(tmp_path):
    (tmp_path/'broken.tif').write_text('this is not a TIFF')
    out = tmp_path/'scores.csv'
    res = mtk_main('focus', 'score', tmp_path/'broken.tif', '-o', out, check=False)
    assert res.returncode == 2 and 'broken.tif' in res.stderr and 'Traceback' not in res.stderr
    assert not out.exists()
    write_stack(tmp_path/'good.tif', _stack(3), axes='ZYX')
    res = mtk_main('focus', 'score', tmp_path, '--skip-bad', '-o', out)
    assert 'skipped' in res.stderr and 'broken.tif' in res.stderr
    assert pd.read_csv(out).file.str.endswith('good.tif').all()


def test_focus_analyze_csv_collection(tmp_path):
    # a labelled collection in the generic CSV layout: one 2-D TIFF per row
    rows = []
    for stain, seed in [('Hoechst', 0), ('Cy3', 1)]:
        s = _stack(7, seed=seed)
        for z in range(len(s)):
            p = tmp_path/'imgs'/f'{stain}_z{z:02d}.tif'
            write_stack(p, s[z], axes='YX')
            rows.append(dict(path=str(p.relative_to(tmp_path)), stain=stain, rank=abs(z - 7)))
    pd.DataFrame(rows).to_csv(tmp_path/'collection.csv', index=False)
    res = mtk_main('focus', 'analyze', tmp_path/'collection.csv', '-o', tmp_path/'out')
    per = pd.read_csv(tmp_path/'out'/'per_stain_srcc.csv').set_index('stain')
    for stain, seed in [('Hoechst', 0), ('Cy3', 1)]:
        s = _stack(7, seed=seed)
        expected = spearmanr(spatial_frequency(s), [abs(z - 7) for z in range(len(s))])[0]
        assert abs(per.loc[stain, 'srcc'] - expected) < 1e-9
    m = json.loads((tmp_path/'out'/'metrics.json').read_text())
    assert abs(m['srcc_mean'] - per.srcc.mean()) < 1e-9
    for f in ['rank_curve.png', 'stain_boxplots.png', 'table1.csv']:
        assert (tmp_path/'out'/f).stat().st_size > 0 and f'wrote {tmp_path/"out"/f}' in res.stdout


def test_bench_eval_and_merge_from_the_shell(tmp_path):
    "The installed `mtk bench` verbs: merge two tiny models, evaluate base and merge on the generated sample."
    import pandas as pd
    res = mtk_main('bench', 'merge', 'tiny:0', 'tiny:1', '--alpha', '0.3', '-o', tmp_path/'m')
    assert f"wrote {tmp_path/'m'/'merged'/'open_clip_config.json'}" in res.stdout
    res = mtk_main('bench', 'eval', 'tiny:0', tmp_path/'m'/'merged', '--sample', '--group', 'coarse', '--n-resamples', '1000', '-o', tmp_path/'e')
    table = pd.read_csv(tmp_path/'e'/'table1.csv', index_col=0)
    assert list(table.columns) == ['Perception (coarse-grained)', 'Perception (coarse-grained) ±']
    assert sorted(table.index) == ['merged', 'tiny:0'] and (table.iloc[:, 1] > 0).all()
    bad = mtk_main('bench', 'eval', 'tiny:0', '--data', tmp_path/'nothing_here', '-o', tmp_path/'x', check=False)
    assert bad.returncode == 2 and 'mtk: error' in bad.stderr and not (tmp_path/'x').exists()
    # uBench images are RGB pictures in shards: the image flags of the other verbs are refused, saying why, before work
    for verb in (['eval', 'tiny:0', '--sample'], ['merge', 'tiny:0', 'tiny:1']):
        bad = mtk_main('bench', *verb, '--axes', 'ZYX', '--z', '3', '-o', tmp_path/'y', check=False)
        assert bad.returncode == 2 and '--axes --z: not used here (uBench' in bad.stderr and not (tmp_path/'y').exists()


def test_focus_train_yaml_and_predict_bbbc006_layout(tmp_path):
    """`mtk focus train` from a YAML config on data written in BBBC006's real layout (16-bit TIFFs, folder per z), then
    `mtk focus predict` on a z-stack; a second train call reuses the finished run, a wrong stain exits 2 and writes nothing."""
    import numpy as np, pandas as pd, tifffile
    from microscopy_toolkit.synthetic.stains import stain_focus_dataset, write_bbbc006_layout, stain_zstack
    images, table = stain_focus_dataset(['Hoechst', 'Alexa488'], n_stacks=2, size=64, seed=0)
    write_bbbc006_layout(tmp_path/'bbbc006', images, table, channels={'w1': 'Hoechst', 'w2': 'Alexa488'})
    cfg = tmp_path/'cfg.yaml'
    cfg.write_text(f"method: [fluoclip, ordinalclip]\nbackbone: tiny\nseeds: [0]\nepochs: {{stain: 1, rank: 1}}\n"
                   f"batch_size: 16\nmax_steps_per_epoch: 2\ndevice: cpu\n"
                   f"data: {{layout: bbbc006, path: {tmp_path/'bbbc006'}, test_fraction: 0.5}}\n")
    res = mtk_main('focus', 'train', cfg, '-o', tmp_path/'run')
    per_seed = pd.read_csv(tmp_path/'run'/'per_seed.csv')
    assert sorted(per_seed.method) == ['fluoclip', 'ordinalclip']
    assert f"wrote {tmp_path/'run'/'results_table.csv'}" in res.stdout
    model = tmp_path/'run'/'fluoclip'/'seed0'/'model.pt'
    stamp = model.stat().st_mtime
    mtk_main('focus', 'train', cfg, '-o', tmp_path/'run')
    assert model.stat().st_mtime == stamp                                   # finished runs are not trained again
    stack = (stain_zstack('Hoechst', n_planes=9, z_focus=4, size=64, seed=1) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path/'stack.tif', stack)
    stains = pd.read_csv(tmp_path/'run'/'fluoclip'/'seed0'/'predictions.csv').stain.unique().tolist()
    res = mtk_main('focus', 'predict', model, tmp_path/'stack.tif', '--stain', stains[0], '-o', tmp_path/'pred.csv')
    pred = pd.read_csv(tmp_path/'pred.csv')
    assert pred.z.tolist() == list(range(9)) and np.allclose(pred.filter(regex=r'^p\d').sum(axis=1), 1, atol=1e-4)
    assert 'best-focused z=' in res.stdout
    bad = mtk_main('focus', 'predict', model, tmp_path/'stack.tif', '--stain', 'NoSuchStain', '-o', tmp_path/'bad.csv', check=False)
    assert bad.returncode == 2 and 'unknown stain' in bad.stderr and not (tmp_path/'bad.csv').exists()


def test_match_train_segment_count_from_the_shell(tmp_path):
    "mtk match train (tiny SD, synthetic) -> best.pt; mtk match segment / count on files, with and without an exemplar box."
    import tifffile
    from microscopy_toolkit.matching import MatchingModel, synthetic_segmentation_set
    from microscopy_toolkit.matching.exemplar import boxes_from_labels
    ck = tmp_path/'run'
    res = mtk_main('match', 'train', '--synthetic', '3', '--epochs', '2', '--lr', '1e-3', '--mode', 'S', '--out', ck, '--device', 'cpu')
    assert f'wrote {ck/"best.pt"}' in res.stdout
    hist = pd.read_csv(ck/'history.csv')
    assert hist.epoch.tolist() == [0, 1] and {'loss', 'attn_loss', 'val_ap50'} <= set(hist.columns)
    sample = synthetic_segmentation_set(1, size=96, seed=7)[0]
    tifffile.imwrite(tmp_path/'cells.tif', (sample['image'] * 1000).astype(np.uint16))
    box = boxes_from_labels(sample['labels'])[0][0]
    out = tmp_path/'seg'
    res = mtk_main('match', 'segment', tmp_path/'cells.tif', '-c', ck/'best.pt', '--box', ','.join(str(int(v)) for v in box), '-o', out)
    lab = tifffile.imread(out/'cells_labels.tif')
    model = MatchingModel.load(ck/'best.pt')
    want = model.segment(tifffile.imread(tmp_path/'cells.tif'), box)[0]
    assert lab.shape == (96, 96) and np.array_equal(lab, want)
    assert (out/'cells_overlay.png').exists() and f'{int(want.max())} objects' in res.stdout
    res = mtk_main('match', 'count', tmp_path/'cells.tif', '-c', ck/'best.pt', '-o', tmp_path/'cnt', '--no-overlays')
    df = pd.read_csv(tmp_path/'cnt'/'counts.csv')
    np.testing.assert_allclose(df['count'], model.count(tifffile.imread(tmp_path/'cells.tif'))[0], atol=1e-3)
    # mistakes: a bad box and a missing checkpoint end with status 2 and one line, nothing written
    bad = mtk_main('match', 'segment', tmp_path/'cells.tif', '-c', ck/'best.pt', '--box', '0,0,500,10', '-o', tmp_path/'bad', check=False)
    assert bad.returncode == 2 and 'outside' in bad.stderr and not (tmp_path/'bad').exists()
    bad = mtk_main('match', 'count', tmp_path/'cells.tif', '-c', tmp_path/'nope.pt', check=False)
    assert bad.returncode == 2 and 'does not exist' in bad.stderr


def test_track_run_eval_and_train_from_the_shell(tmp_path, monkeypatch):
    "mtk track run (classical linker on given masks, and a trained tracker) -> CTC folder -> mtk track eval, against the library."
    from microscopy_toolkit.synthetic.cells import cell_timelapse, write_ctc_gt
    from microscopy_toolkit.tracking.ctc import evaluate_ctc
    tl = cell_timelapse(n_frames=6, size=64, n_cells=5, radius=(4, 7), seed=3, division_prob=0.3, min_age=1)
    write_ctc_gt(tmp_path, tl)
    monkeypatch.setenv('MTK_PROGRESS', '1')          # progress forced on: a bar over the stages on stderr
    res = mtk_main('track', 'run', tmp_path/'01', '--masks', tmp_path/'01_GT'/'SEG', '--linker', 'overlap', '-o', tmp_path/'01_RES')
    assert 'tracks' in res.stdout and (tmp_path/'01_RES'/'res_track.txt').exists()
    assert 'track run' in res.stderr and '4/4' in res.stderr and 'validate' in res.stderr, res.stderr
    ev = mtk_main('track', 'eval', tmp_path/'01_RES', tmp_path/'01_GT', '--json', tmp_path/'m.json')
    assert 'track eval' in ev.stderr and '3/3' in ev.stderr and 'score' in ev.stderr, ev.stderr
    monkeypatch.setenv('MTK_PROGRESS', '0')
    quiet = mtk_main('track', 'eval', tmp_path/'01_RES', tmp_path/'01_GT')
    assert quiet.stderr.strip() == f"evaluating {tmp_path/'01_RES'} against {tmp_path/'01_GT'} ...", quiet.stderr
    m = json.loads((tmp_path/'m.json').read_text())
    lib = evaluate_ctc(tmp_path/'01_RES', tmp_path/'01_GT')
    assert m['SEG'] == 1.0 and m['DET'] == 1.0 and abs(m['TRA'] - lib['TRA']) < 1e-12 and abs(m['LNK'] - lib['LNK']) < 1e-12
    assert f"TRA: {lib['TRA']:.4f}" in ev.stdout
    # train a tiny tracker on generated sequences, then track with it
    mtk_main('track', 'train', '--synthetic', '3', '--seg-epochs', '1', '--proj-epochs', '1', '--link-epochs', '20', '-o', tmp_path/'tr', '--device', 'cpu')
    hist = pd.read_csv(tmp_path/'tr'/'link_history.csv')
    assert hist.loss.iloc[-1] < hist.loss.iloc[0]
    mtk_main('track', 'run', tmp_path/'01', '-c', tmp_path/'tr'/'tracker.pt', '--masks', tmp_path/'01_GT'/'SEG', '-o', tmp_path/'02_RES')
    m2 = evaluate_ctc(tmp_path/'02_RES', tmp_path/'01_GT')
    assert m2['DET'] == 1.0 and m2['LNK'] > 0.5, m2
    # mistakes end with status 2 and one line
    bad = mtk_main('track', 'run', tmp_path/'01', '--linker', 'overlap', '-o', tmp_path/'x', check=False)
    assert bad.returncode == 2 and '--masks' in bad.stderr and not (tmp_path/'x').exists()
    bad = mtk_main('track', 'eval', tmp_path/'nope', tmp_path/'01_GT', check=False)
    assert bad.returncode == 2
