"""FluoCLIP cost of the text side, all in one process:

1. a training step (forward + backward + RAdam step, stage 2, B images of L stains, K ranks) with the L x K unique
   prompts encoded once per step (`FluoCLIP.forward`), against a naive step that builds and encodes each image's K prompts
   (B x K prompts per step), as a per-sample implementation of Eq. 7-9 does; the two give the same logits (checked);
2. the text side alone (prompts, text encoder, adapter, logits, backward), ours against naive;
3. per-image inference time of `predict`'s model call (text features cached) against the bare image encoder.

    python benchmarks/fluoclip.py              # tiny and RN50 (random weights, 224 px), B=32, L=4, K=10
    python benchmarks/fluoclip.py --quick      # tiny only
    python benchmarks/fluoclip.py --compare    # FluoCLIP vs OrdinalCLIP vs CE vs NumCLIP on the synthetic stacks (table)

--compare trains the four methods with `run_experiment` from the same initialisation (the same CLIP backbone weights,
`tiny:SEED` or a named architecture with `--pretrained false`) on the same synthetic split, and prints accuracy, PLCC,
SRCC and MAE (mean +- std over seeds) with `results_table`.
"""
import argparse, logging, os, time

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


def compare(out_dir: str, backbone: str = 'tiny', seeds=(0, 1), stain_epochs: int = 3, rank_epochs: int = 15,
            n_stacks: int = 4, size: int = 64, methods=COMPARED):
    "The four-method table on synthetic stacks; every method of a seed starts from the same backbone weights."
    cfg = dict(method=list(methods), backbone=backbone, pretrained=False if backbone != 'tiny' else None,
               seeds=list(seeds), epochs={'stain': stain_epochs, 'rank': rank_epochs}, batch_size=32,
               data={'layout': 'synthetic', 'n_stacks': n_stacks, 'size': size}, out_dir=out_dir, device='cpu')
    t0 = time.perf_counter()
    per_seed = run_experiment(cfg, show=False)
    table = results_table(per_seed)
    print(f"synthetic stacks ({n_stacks} per stain, {size} px), backbone {backbone}, epochs stain {stain_epochs} / "
          f"rank {rank_epochs}, seeds {list(seeds)}: {time.perf_counter() - t0:.0f} s")
    print(table.to_string())
    return per_seed, table


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--batch', type=int, default=32); ap.add_argument('--stains', type=int, default=4); ap.add_argument('--ranks', type=int, default=10)
    ap.add_argument('--compare', action='store_true'); ap.add_argument('--out', default='mtk_output/fluoclip_compare')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1]); ap.add_argument('--rank-epochs', type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if a.compare:
        compare(a.out, seeds=a.seeds, rank_epochs=a.rank_epochs)
        raise SystemExit
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    run('tiny', a.batch, a.stains, a.ranks, repeats=5, infer_images=64)
    if not a.quick: run('RN50', a.batch, a.stains, a.ranks, repeats=2, infer_images=32)
