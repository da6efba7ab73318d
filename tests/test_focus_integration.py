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
