"End to end: synthetic stacks written in the public layouts, read back by the toolkit's readers, analysed; numbers cross-checked with SciPy."
import re
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy.stats import spearmanr

from microscopy_toolkit.io import read_zstack, read_image, write_stack
from microscopy_toolkit.synthetic.stains import stain_focus_dataset, write_bbbc006_layout, write_fluomix_layout, z_to_rank
from microscopy_toolkit.focus.sharpness import spatial_frequency, per_stain_srcc, srcc_table
from microscopy_toolkit.focus.analysis import analyze_collection, score_stacks


def test_bbbc006_layout_to_table1(tmp_path):
    images, table = stain_focus_dataset(stains=['Hoechst', 'Alexa488'], n_stacks=2, size=48, seed=4)
    paths = write_bbbc006_layout(tmp_path, images, table)
    # a user's view of BBBC006: z from the folder name, channel from w1/w2, rank from z
    rows = []
    for p in paths:
        z = int(re.search(r'_z_(\d\d)', p.parent.name)[1]); w = re.search(r'_(w[12])', p.name)[1]
        rows.append(dict(path=str(p), stain={'w1': 'Hoechst', 'w2': 'phalloidin'}[w], rank=int(z_to_rank(z))))
    coll = pd.DataFrame(rows)
    res = analyze_collection(coll, measure='sf', dataset='BBBC006-like')
    for stain, g in coll.assign(sf=[spatial_frequency(tifffile.imread(p).astype(np.float64)) for p in coll.path]).groupby('stain'):
        assert abs(res.per_stain.set_index('stain').loc[stain, 'srcc'] - spearmanr(g.sf, g['rank'])[0]) < 1e-9
    assert set(res.per_stain.stain) == {'Hoechst', 'phalloidin'}
    t1 = res.table1['BBBC006-like']
    assert abs(t1['mean'] - res.per_stain.srcc.mean()) < 1e-12


def test_fluomix_list_labels(tmp_path):
    images, table = stain_focus_dataset(n_stacks=1, size=32, seed=1)
    write_fluomix_layout(tmp_path, images, table)
    lines = (tmp_path/'fluomix_list.txt').read_text().split()
    names, labels, stains = lines[0::3], list(map(int, lines[1::3])), lines[2::3]
    for n, l, s in zip(names, labels, stains):
        z = int(re.search(r'_z(\d\d)_', n)[1])
        assert l == abs(z - 16) and n.endswith(f'_SV_{s}.tif') and (tmp_path/n).exists()


def test_score_stacks_on_written_stacks_matches_in_memory(tmp_path):
    images, table = stain_focus_dataset(stains=['Cy3', 'Hoechst'], n_stacks=1, size=48, seed=2)
    for stain in ('Cy3', 'Hoechst'):
        write_stack(tmp_path/f'{stain}.tif', images[table.index[table.stain == stain]], axes='ZYX')
    df = score_stacks(tmp_path, measures=['sf', 'tenengrad'])
    for stain in ('Cy3', 'Hoechst'):
        rows = df[df.file.str.endswith(f'{stain}.tif')]
        np.testing.assert_allclose(rows.sf.values, spatial_frequency(images[table.index[table.stain == stain]].astype(np.float64)), rtol=1e-6)
    # the in-focus plane of the bright nuclear stain is found within the annotation jitter (Hoechst has none)
    assert abs(int(df[df.file.str.endswith('Hoechst.tif') & df.best].z.iloc[0]) - 16) <= 1


FLUOMIX_LISTS = Path(__file__).parent / 'fixtures' / 'fluomix'


def test_released_fluomix_lists_load():
    "Every row of the six released FluoMix lists loads; counts per (stain, label) equal a pandas read of the raw text."
    import gzip, hashlib, json, io
    from microscopy_toolkit.focus.data import read_fluomix, parse_fluomix_name
    meta = json.loads((FLUOMIX_LISTS / 'lists.json').read_text())['files']
    assert len(meta) == 6
    for name, m in meta.items():
        raw = gzip.decompress((FLUOMIX_LISTS / f'{name}.gz').read_bytes())
        assert hashlib.sha256(raw).hexdigest() == m['sha256'] and raw.count(b'\n') == m['lines']
        ref = pd.read_csv(io.BytesIO(raw), sep=' ', header=None, names=['image', 'label', 'stain'])
        t = read_fluomix(None, FLUOMIX_LISTS / f'{name}.gz', check_files=False)
        assert len(t) == len(ref) == m['lines']
        assert t.groupby(['stain', 'rank']).size().to_dict() == ref.groupby(['stain', 'label']).size().to_dict()
        assert [Path(p).name for p in t.path] == ref.image.tolist()
        # z parsed from the name equals the digits after '_z' in the raw name
        assert t.z.tolist() == [int(re.search(r'_z(\d+)_ch', n)[1]) for n in ref.image]
    # the paper's split sizes (Supplement: 25,967 train / 6,506 val) and the rare level 9 of the validation list
    assert (meta['data_info_ver3_train_stain.txt']['lines'], meta['data_info_ver3_val_stain.txt']['lines']) == (25967, 6506)
    val = read_fluomix(None, FLUOMIX_LISTS / 'data_info_ver3_val_stain.txt.gz', check_files=False)
    assert int((val['rank'] == 9).sum()) == 263 and set(val.stain) == {'Alexa-488', 'Alexa-647', 'Cy3', 'Hoechst-34580'}


def test_released_fluomix_images_without_extension(tmp_path):
    "A released list names files without an extension: the reader finds them, the data set reads them as TIFF."
    from microscopy_toolkit.focus.data import read_fluomix, FocusDataset
    name = 'd1-2um_tissue_4color_SR_Ibas-488Tuj1-cy3Col4-647Hoe_Mosaic001_s00_z08_ch01_SV_ALEXA-488'
    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7)
    tifffile.imwrite(tmp_path / name, img)
    (tmp_path / 'list.txt').write_text(f'{name} 8 Alexa-488\n')
    for t in (read_fluomix(tmp_path, tmp_path / 'list.txt'), read_fluomix(tmp_path)):
        assert t[['rank', 'stain', 'tissue', 'dataset']].values.tolist() == [[8, 'Alexa-488', 'brain', 'D1']]
        ds = FocusDataset(t)
        np.testing.assert_array_equal(ds.image(0), img)


def test_prompt_models_train_on_a_biomedclip_shaped_backbone():
    "OrdinalCLIP, FluoCLIP and NumCLIP on BiomedCLIP's text tower (HFTextEncoder + BERT): logits match the prompts encoded one by one, a step moves the loss."
    import torch
    import torch.nn.functional as F
    from microscopy_toolkit.models.clip import tiny_biomedclip
    from microscopy_toolkit.focus.clip import assemble_prompts
    from microscopy_toolkit.focus.train import build_model

    g = torch.Generator().manual_seed(0)
    images, ranks, stains = torch.randn(6, 3, 64, 64, generator=g), torch.tensor([0, 2, 4, 5, 7, 9]), torch.tensor([0, 1, 0, 1, 0, 1])
    for method in ('ordinalclip', 'fluoclip', 'numclip'):
        model = build_model(method, ['hoechst', 'dapi'], 10, backbone=tiny_biomedclip(seed=0), seed=0)
        assert model.text_encoder.hf and model.text_encoder.vocab.sot == 2
        groups = model.set_stage(model.stages[-1])
        model.train()
        out = model(images, stains)
        loss = model.loss(out, ranks, stains)
        opt = torch.optim.SGD([p for ps in groups.values() for p in ps], lr=1e-2)
        opt.zero_grad(); loss.backward(); opt.step()
        assert torch.isfinite(loss)
        ctx = model.context
        assert ctx.grad is not None and ctx.grad.abs().sum() > 0, method  # gradients reach the learned context
        with torch.no_grad():
            assert (model.loss(model(images, stains), ranks, stains) - loss).abs() > 1e-6, method
    model = build_model('ordinalclip', ['hoechst'], 10, backbone=tiny_biomedclip(seed=1), seed=0).eval()
    with torch.no_grad():
        img = F.normalize(model.image_encoder(images), dim=-1)
        R = model.ranks()
        txt = [F.normalize(model.text_encoder(*assemble_prompts(model.text_encoder, [model.context, model.rank_context, R[k]]))[0], dim=-1)
               for k in range(10)]
        assert torch.allclose(model(images), model.logit_scale * img @ torch.stack(txt).T, atol=1e-4)


def _fluoclip_benchmark():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / 'benchmarks' / 'fluoclip.py'
    spec = importlib.util.spec_from_file_location('fluoclip_benchmark', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_method_comparison_machinery(tmp_path):
    "benchmarks/fluoclip.py --compare in miniature: one initialisation for all four methods, one split, a chance row."
    import json
    fb = _fluoclip_benchmark()
    stains = ['Hoechst', 'Cy3']
    assert fb.initial_encoders_equal(fb.COMPARED, stains, 10, 'tiny', seed=1)
    from microscopy_toolkit.focus.train import build_model
    a, b = (build_model('ce', stains, 10, 'tiny', seed=s).image_encoder.state_dict() for s in (1, 2))
    assert not all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # the check would see different weights
    assert abs(fb.chance_mae(10) - 99 / 30) < 1e-12  # mean |i - j| over 10 x 10 levels = (K^2 - 1) / (3K)
    schedule = dict(fb.SMOKE_SCHEDULE, epochs={'stain': 1, 'rank': 1}, max_steps_per_epoch=1)
    per_seed, table, _ = fb.compare(str(tmp_path / 'cmp'), seeds=[0], schedule=schedule,
                                    data={'layout': 'synthetic', 'n_stacks': 2, 'size': 32, 'stains': stains})
    assert per_seed['method'].tolist() == fb.COMPARED and per_seed['n'].nunique() == 1  # one test split for all
    assert table.index.tolist() == fb.COMPARED + ['chance']
    assert table.loc['chance', 'Accuracy (%)'] == '10.00' and table.loc['chance', 'MAE'] == '3.300'
    fb.record(per_seed, str(tmp_path / 'cmp'), tmp_path / 'rec.json', [0])
    rec = json.loads((tmp_path / 'rec.json').read_text())
    assert [r['method'] for r in rec['per_seed']] == fb.COMPARED and all(r['train_seconds'] >= 0 for r in rec['per_seed'])


def test_recorded_method_comparison_is_the_documented_run():
    "The fixture quoted in nb 19 holds the four methods x three seeds of the documented command and schedule."
    import json
    fb = _fluoclip_benchmark()
    rec = json.loads((Path(__file__).parent / 'fixtures' / 'focus_fluoclip_compare.json').read_text())
    assert rec['schedule'] == json.loads(json.dumps(fb.SMOKE_SCHEDULE)) and rec['data'] == fb.SMOKE_DATA
    got = sorted((r['method'], r['seed']) for r in rec['per_seed'])
    assert got == sorted((m, s) for m in fb.COMPARED for s in (0, 1, 2))
    for r in rec['per_seed']:
        assert 0 <= r['accuracy'] <= 1 and -1 <= r['srcc'] <= 1 and r['mae'] >= 0
