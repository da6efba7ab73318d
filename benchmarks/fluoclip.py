"""FluoCLIP cost of the text side, all in one process:

1. a training step (forward + backward + RAdam step, stage 2, B images of L stains, K ranks) with the L x K unique
   prompts encoded once per step (`FluoCLIP.forward`), against a naive step that builds and encodes each image's K prompts
   (B x K prompts per step), as a per-sample implementation of Eq. 7-9 does; the two give the same logits (checked);
2. the text side alone (prompts, text encoder, adapter, logits, backward), ours against naive;
3. per-image inference time of `predict`'s model call (text features cached) against the bare image encoder.

    python benchmarks/fluoclip.py              # tiny and RN50 (random weights, 224 px), B=32, L=4, K=10
    python benchmarks/fluoclip.py --quick      # tiny only
    python benchmarks/fluoclip.py --compare    # FluoCLIP vs OrdinalCLIP vs CE vs NumCLIP on the synthetic stacks (table)

--compare trains the four methods with `run_experiment` from the same initialisation (the same tiny CLIP backbone
weights `tiny:SEED`, checked before training) on the same synthetic split, with tutorial 02's smoke schedule (stain 3 /
rank 120 epochs of 10 steps, learning rates 1e-3), and prints accuracy, PLCC, SRCC and MAE (mean +- std over seeds)
with `results_table` and a chance row. Its numbers are kept in tests/fixtures/focus_fluoclip_compare.json
(`--record PATH`) and quoted in nbs/19_focus.ipynb. On a shared machine pass `--threads 1`: with torch's default
threads a busy 2-core machine ran an epoch 30x slower.

    python benchmarks/fluoclip.py --compare --threads 1 --seeds 0 1 2 --record tests/fixtures/focus_fluoclip_compare.json
"""
import argparse, logging, os, time
from pathlib import Path

os.environ.setdefault('MTK_PROGRESS', '0')
logging.getLogger().setLevel(logging.ERROR)
import numpy as np
import torch
import torch.nn.functional as F

from microscopy_toolkit.focus.clip import assemble_prompts
from microscopy_toolkit.models.clip import load_clip_backbone
from microscopy_toolkit.focus.fluoclip import FluoCLIP
from microscopy_toolkit.focus.train import results_table, run_experiment

COMPARED = ['fluoclip', 'ordinalclip', 'ce', 'numclip']


def naive_logits(model: FluoCLIP, images: torch.Tensor, stain_ids: torch.Tensor) -> torch.Tensor:
    "Eq. 7-9 per sample: the K prompts of image i's stain are assembled and encoded for image i (B x K prompts)."
    img = model.image_features(images)
    R = model.stain_rank_embeddings()                                  # (L, K, T, D)
    B, K = len(images), model.n_ranks
    S = model.stain_tokens[stain_ids][:, None].expand(-1, K, -1, -1).reshape(B * K, *model.stain_tokens.shape[1:])
    Rb = R[stain_ids].reshape(B * K, *R.shape[2:])
    x, eot = assemble_prompts(model.text_encoder, [model.context, S, model.rank_context, Rb])
    text = model._adapt(model.text_encoder(x, eot).reshape(B, K, -1))
    return model.logit_scale * torch.einsum('be,bke->bk', img, text)


def step_time(model, opt, images, ranks, stain_ids, naive: bool, repeats: int) -> float:
    times = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        out = naive_logits(model, images, stain_ids) if naive else model(images, stain_ids)
        loss = model.loss(out, ranks, stain_ids)
        opt.zero_grad(); loss.backward(); opt.step()
        if r: times.append(time.perf_counter() - t0)                # first call is warm-up
    return float(np.median(times))


def run(backbone: str, B: int, L: int, K: int, repeats: int, infer_images: int):
    bb = load_clip_backbone(backbone)
    stains = ['Hoechst', 'Alexa488', 'Cy3', 'Alexa647', 'DAPI', 'Hoechst 33342'][:L]
    model = FluoCLIP(bb, stains, n_ranks=K, variant='fluoclip')
    size = bb.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(B, 3, size, size, generator=g)
    ranks, stain_ids = torch.randint(0, K, (B,), generator=g), torch.arange(B) % L
    model.eval()
    with torch.no_grad():                                                # same numbers both ways
        diff = (naive_logits(model, images, stain_ids) - model(images, stain_ids)).abs().max().item()
    groups = model.set_stage('rank'); model.train()
    opt = torch.optim.RAdam([{'params': p, 'lr': 1e-6} for p in groups.values()])
    feats = model.image_features(images).detach()                     # text side alone: prompts -> features -> logits -> backward
    def text_only(naive):
        times = []
        for r in range(repeats + 2):
            t0 = time.perf_counter()
            if naive:
                R = model.stain_rank_embeddings(); Bn = len(images)
                S = model.stain_tokens[stain_ids][:, None].expand(-1, K, -1, -1).reshape(Bn * K, *model.stain_tokens.shape[1:])
                x, eot = assemble_prompts(model.text_encoder, [model.context, S, model.rank_context, R[stain_ids].reshape(Bn * K, *R.shape[2:])])
                logits = torch.einsum('be,bke->bk', feats, model._adapt(model.text_encoder(x, eot).reshape(Bn, K, -1)))
            else: logits = model.rank_logits(feats, stain_ids)
            logits.sum().backward()
            if r > 1: times.append(time.perf_counter() - t0)
        return float(np.median(times))
    tt_ours, tt_naive = text_only(False), text_only(True)
    print(f"[{backbone}] text side only (prompt assembly, text encoder, adapter, logits, backward): {tt_ours*1e3:8.1f} ms | naive "
          f"{tt_naive*1e3:8.1f} ms | naive / ours = {tt_naive / tt_ours:5.2f}x")
    t_ours = step_time(model, opt, images, ranks, stain_ids, False, repeats)
    t_naive = step_time(model, opt, images, ranks, stain_ids, True, repeats)
    print(f"[{backbone}] training step, B={B} L={L} K={K}: L*K={L*K} prompts {t_ours*1e3:8.1f} ms | naive B*K={B*K} prompts "
          f"{t_naive*1e3:8.1f} ms | naive / ours = {t_naive / t_ours:5.2f}x   (max |logit diff| {diff:.1e})")

    model.eval()
    x = torch.randn(infer_images, 3, size, size, generator=g)
    sid = torch.arange(infer_images) % L
    with torch.no_grad():
        model(x[:4], sid[:4])                                            # fills the text cache, warms up
        t0 = time.perf_counter(); model.image_encoder(x); t_enc = time.perf_counter() - t0
        t0 = time.perf_counter(); model(x, sid); t_model = time.perf_counter() - t0
        model.clear_cache()
        t0 = time.perf_counter(); model(x, sid); t_cold = time.perf_counter() - t0
    n = infer_images
    print(f"[{backbone}] inference of {n} images: bare image encoder {t_enc/n*1e3:7.2f} ms/image | FluoCLIP (cached prompts) "
          f"{t_model/n*1e3:7.2f} ms/image = {t_model / t_enc:4.2f}x the encoder | first call (encodes the {L*K} prompts) "
          f"{t_cold/n*1e3:7.2f} ms/image")
    return dict(backbone=backbone, text_ms=tt_ours * 1e3, naive_text_ms=tt_naive * 1e3, step_ms=t_ours * 1e3, naive_step_ms=t_naive * 1e3, speedup=t_naive / t_ours,
                infer_ratio=t_model / t_enc)


# The schedule of tutorial 02's smoke mode: a tiny CLIP from scratch learns in 1,200 steps at these rates, where the
# reference rates (1e-4 / 1e-5, 100 epochs of the whole set) leave it near chance (11-15% against 10%).
SMOKE_SCHEDULE = dict(
    epochs={'stain': 3, 'rank': 120}, max_steps_per_epoch=10, batch_size=32, eval_every=30,
    learning_rates={'stain': {'stain_tokens': 3e-3, 'adapter': 1e-3},
                    'rank': {'context': 1e-3, 'ranks': 1e-3, 'image_encoder': 1e-3, 'conditioner': 1e-3,
                             'stain_tokens': 1e-3, 'adapter': 1e-3, 'regressor': 1e-3, 'all': 1e-3}})
SMOKE_DATA = {'layout': 'synthetic', 'n_stacks': 6, 'size': 64}      # tutorial 02 smoke: 4 stains x 6 stacks x 32 planes


def initial_encoders_equal(methods, stains, n_ranks: int, backbone: str, seed: int) -> bool:
    "Whether every method of a seed starts from the same image-encoder weights (the comparison's premise)."
    from microscopy_toolkit.focus.train import build_model
    sds = [build_model(m, stains, n_ranks, backbone, pretrained=None if backbone.startswith('tiny') else False,
                       seed=seed).image_encoder.state_dict() for m in methods]
    return all(sd.keys() == sds[0].keys() and all(torch.equal(sd[k], sds[0][k]) for k in sd) for sd in sds[1:])


def compare(out_dir: str, backbone: str = 'tiny', seeds=(0, 1, 2), methods=COMPARED, schedule: dict | None = None,
            data: dict | None = None):
    """The four-method table on synthetic stacks, trained with `schedule` (default: tutorial 02's smoke schedule);
    every method of a seed starts from the same backbone weights (checked) on the same split. Returns
    (per-seed metrics, table with a chance row, seconds)."""
    from microscopy_toolkit.focus.train import load_focus_data
    schedule, data = dict(SMOKE_SCHEDULE if schedule is None else schedule), dict(SMOKE_DATA if data is None else data)
    cfg = dict(method=list(methods), backbone=backbone, pretrained=None if backbone.startswith('tiny') else False,
               seeds=list(seeds), data=data, out_dir=out_dir, device='cpu', **schedule)
    train_ds, _ = load_focus_data(data)
    for s in seeds:
        if not initial_encoders_equal(methods, train_ds.stains, train_ds.n_ranks, backbone, s):
            raise RuntimeError(f"seed {s}: the methods do not start from the same image-encoder weights")
    t0 = time.perf_counter()
    per_seed = run_experiment(cfg, show=False)
    seconds = time.perf_counter() - t0
    table = results_table(per_seed)
    table.loc['chance'] = [f"{100 / train_ds.n_ranks:.2f}", '0', '0', f"{chance_mae(train_ds.n_ranks):.3f}", 0]
    return per_seed, table, seconds


def chance_mae(n_ranks: int) -> float:
    "MAE of a guess uniform over the levels against uniform labels (the synthetic stacks cover the levels about evenly)."
    k = np.arange(n_ranks)
    return float(np.abs(k[:, None] - k[None, :]).mean())


def record(per_seed, out_dir: str, path: str, seeds, backbone: str = 'tiny'):
    """The comparison's per-seed numbers as a small JSON fixture (tests/fixtures/focus_fluoclip_compare.json), with each
    run's training seconds (its history.csv; runs reused from an earlier call keep their own time)."""
    import json
    import pandas as pd
    rows = per_seed[['method', 'seed', 'accuracy', 'plcc', 'srcc', 'mae']].round(4).to_dict('records')
    for r in rows:
        hist = pd.read_csv(Path(out_dir) / r['method'] / f"seed{r['seed']}" / 'history.csv')
        r['train_seconds'] = round(float(hist['seconds'].sum()), 1)
    doc = dict(command='python benchmarks/fluoclip.py --compare --threads 1 --seeds ' + ' '.join(map(str, seeds)),
               backbone=backbone, schedule=SMOKE_SCHEDULE, data=SMOKE_DATA, per_seed=rows)
    Path(path).write_text(json.dumps(doc, indent=1) + '\n')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--stains', type=int, default=4); ap.add_argument('--ranks', type=int, default=10)
    ap.add_argument('--compare', action='store_true'); ap.add_argument('--out', default='mtk_output/fluoclip_compare')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--methods', nargs='+', default=COMPARED)
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1, help='torch threads (1 on a shared machine)')
    ap.add_argument('--record', default='', help='with --compare: write the per-seed numbers to this JSON file')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.compare:
        per_seed, table, seconds = compare(a.out, seeds=a.seeds, methods=a.methods)
        print(f"synthetic stacks ({SMOKE_DATA['n_stacks']} per stain, {SMOKE_DATA['size']} px), tiny CLIP from scratch, "
              f"tutorial 02 smoke schedule, seeds {a.seeds}: {seconds:.0f} s")
        print(table.to_string())
        if a.record: record(per_seed, a.out, a.record, a.seeds)
        raise SystemExit
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    run('tiny', a.batch, a.stains, a.ranks, repeats=5, infer_images=64)
    if not a.quick: run('RN50', a.batch, a.stains, a.ranks, repeats=2, infer_images=32)
