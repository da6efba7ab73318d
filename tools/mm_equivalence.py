"""Equivalence of our released MicroscopyMatching path with the authors' code, stage by stage, on the same random
weights.

The authors' inference code (github.com/phoebehxf/MicroscopyMatching) hardcodes SD v1.4 from the hub and downloads its
checkpoints; this harness gives both sides the SAME random weights of the released architectures instead:
an SD v1.4-shaped diffusers folder (random UNet / VAE / CLIP text encoder from the v1.4 configs in
`microscopy_toolkit.models.sd`, CLIP's BPE vocabulary written as a `CLIPTokenizer` folder), random
`microscopy_matching_{seg,cnt}.pth` in the authors' key format, and one RGB image. Their code runs in their own
virtual environment (a subprocess); ours in the project's environment. Nothing is downloaded (HF_HUB_OFFLINE=1).

Rerun (about 10 minutes on 2 CPU cores, peak ~12 GB; never run two sides at once on a small machine):

    # 1. their code and its pins, in a scratch venv OUTSIDE the repository
    git clone https://github.com/phoebehxf/MicroscopyMatching /scratch/mm
    python -m venv /scratch/mmvenv
    /scratch/mmvenv/bin/pip install torch==2.4.1 torchvision==0.19.1 diffusers==0.29.0 transformers==4.41.0 \
        'huggingface_hub<0.26' accelerate==0.23.0 pytorch-lightning==2.2.0 kornia==0.7.1 numpy==1.24.4 \
        opencv-python-headless==4.5.5.64 scikit-image==0.21.0 segment-anything openai-clip fastremap pandas \
        fill-voids edt numba tifffile networkx matplotlib natsort roifile pyrallis easydict einops==0.3.0 scipy \
        dask ftfy psutil
    # (taming-transformers and gradio are never imported by inference; PyPI's openai-clip supplies `import clip`)
    # 2. weights + image, their run, our run, the comparison (writes WORK/report.json)
    python tools/mm_equivalence.py all --work /scratch/mmwork --repo /scratch/mm --python /scratch/mmvenv/bin/python
    # 3. (maintainers) refresh the CI fixtures under tests/fixtures/ from that run
    python tools/mm_equivalence.py fixtures --work /scratch/mmwork --repo /scratch/mm \
        --python /scratch/mmvenv/bin/python

Steps can be run one at a time: `make`, `theirs --task seg|cnt [--box]`, `ours --task seg|cnt [--box]`, `compare`.
`theirs` imports only their code and their pins (this file is run by their interpreter for that step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SEED = 0  # weights, image, and the latent sample + noise (their global RNG, our generator)
BOX = [[40, 48, 88, 96]]  # one exemplar box in image pixels (x0, y0, x1, y1) of the 256 px test image
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- shared helpers
def peak_gb() -> float:
    "Peak resident memory of this process so far (GB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def save_npz(path: Path, cap: dict):
    out = {}
    for k, v in cap.items():
        if hasattr(v, 'detach'):
            v = v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    np.savez(path, **out)


def test_image(size: int = 256, seed: int = SEED) -> np.ndarray:
    "`(size, size, 3)` uint8: bright round cells of a few sizes on a dim noisy background (a crude fluorescence field)."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.zeros((size, size), np.float32)
    for _ in range(size * size // 900):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(5, 12)
        img = np.maximum(img, np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / r**2) ** 2))
    img = 0.1 + 0.8 * img + rng.normal(0, 0.03, img.shape)
    rgb = np.stack([img * 0.3, img, img * 0.6], -1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- make (our env)
def _tokenizer_folder(folder: Path):
    "CLIP's BPE (the copy open_clip ships) written as the `vocab.json` + `merges.txt` of a transformers CLIPTokenizer."
    import gzip
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode('utf-8').split('\n')[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + '</w>' for v in vocab] + [''.join(m.split()) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'vocab.json').write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / 'merges.txt').write_text('#version: 0.2\n' + '\n'.join(merges) + '\n')
    eot = '<|endoftext|>'
    cfg = dict(model_max_length=77, bos_token='<|startoftext|>', eos_token=eot, unk_token=eot, pad_token=eot,
               do_lower_case=True, errors='replace', tokenizer_class='CLIPTokenizer')  # fmt: skip
    (folder / 'tokenizer_config.json').write_text(json.dumps(cfg))
    special = {k: cfg[k] for k in ('bos_token', 'eos_token', 'unk_token', 'pad_token')}
    (folder / 'special_tokens_map.json').write_text(json.dumps(special))


def _prefix_text_keys(path: Path):
    "transformers 5 writes CLIPTextModel keys without `text_model.`; older releases (theirs: 4.41) need the prefix."
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    save_file({(k if k.startswith('text_model.') else 'text_model.' + k): v for k, v in state.items()}, path,
              metadata={'format': 'pt'})  # fmt: skip


def make(work: Path, seed: int = SEED, size: int = 256):
    "Random SD v1.4-shaped folder, random released seg / cnt checkpoints in the authors' format, the test image."
    import torch
    from PIL import Image
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel
    from microscopy_toolkit.models.sd import SD14_VAE_CONFIG, SD14_TEXT_CONFIG, SD14_SCHEDULER_CONFIG, sd14_unet
    from microscopy_toolkit.matching.released import ReleasedSegmentation, ReleasedCounting, to_author_keys

    work.mkdir(parents=True, exist_ok=True)
    sd = work / 'sd'
    if not (sd / 'model_index.json').is_file():
        sd14_unet('cpu', seed).save_pretrained(sd / 'unet')
        torch.manual_seed(seed + 1)
        AutoencoderKL(**SD14_VAE_CONFIG).save_pretrained(sd / 'vae')
        torch.manual_seed(seed + 2)
        CLIPTextModel(CLIPTextConfig(**SD14_TEXT_CONFIG)).save_pretrained(sd / 'text_encoder')
        _prefix_text_keys(sd / 'text_encoder' / 'model.safetensors')
        _tokenizer_folder(sd / 'tokenizer')
        sched = dict(_class_name='PNDMScheduler', set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
                     **SD14_SCHEDULER_CONFIG)  # fmt: skip
        (sd / 'scheduler').mkdir(exist_ok=True)
        (sd / 'scheduler' / 'scheduler_config.json').write_text(json.dumps(sched))
        index = dict(_class_name='StableDiffusionPipeline', _diffusers_version='0.29.0',
                     unet=['diffusers', 'UNet2DConditionModel'], vae=['diffusers', 'AutoencoderKL'],
                     text_encoder=['transformers', 'CLIPTextModel'], tokenizer=['transformers', 'CLIPTokenizer'],
                     scheduler=['diffusers', 'PNDMScheduler'], safety_checker=[None, None],
                     feature_extractor=[None, None], requires_safety_checker=False)  # fmt: skip
        (sd / 'model_index.json').write_text(json.dumps(index))
    for name, cls, s in [('seg', ReleasedSegmentation, seed + 3), ('cnt', ReleasedCounting, seed + 4)]:
        if not (work / f'{name}.pth').is_file():
            torch.manual_seed(s)
            torch.save(to_author_keys(cls().state_dict()), work / f'{name}.pth')
    torch.save(torch.randn(768, generator=torch.Generator().manual_seed(seed + 5)), work / 'task_embed.pth')
    Image.fromarray(test_image(size, seed)).save(work / 'image.png')
    Image.fromarray(test_image(512, seed + 1)).save(work / 'image512.png')
    print(f'wrote {work}/sd, seg.pth, cnt.pth, task_embed.pth, image.png ({size} px), image512.png')


# ----------------------------------------------------------------------------------------------- theirs (their venv)
def _patch_offline(work: Path):
    "Point their hardcoded downloads at the local random weights: SD folder, task_embed.pth, no ImageNet/SwAV R50."
    import huggingface_hub
    import torch
    import torchvision
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipeline

    orig = StableDiffusionPipeline.from_pretrained.__func__
    local = str(work / 'sd')
    StableDiffusionPipeline.from_pretrained = classmethod(lambda cls, name, *a, **k: orig(cls, local, *a, **k))
    # as online: the file's path comes back, which their code assigns to the embedding row (and falls back)
    huggingface_hub.hf_hub_download = lambda *a, **k: str(work / 'task_embed.pth')
    resnet50 = torchvision.models.resnet50

    def random_resnet50(pretrained=False, **kw):
        return resnet50(weights=None, **kw)

    torchvision.models.resnet50 = random_resnet50
    torch.hub.load_state_dict_from_url = lambda *a, **k: {}  # the SwAV weights: the checkpoint overwrites them


def _wrap(obj, name: str, before=None, after=None):
    "Replace `obj.name` by a call that records arguments (`before(*a, **k)`) and results (`after(out)`)."
    f = getattr(obj, name)

    def g(*a, **k):
        if before:
            before(*a, **k)
        out = f(*a, **k)
        if after:
            after(out)
        return out

    setattr(obj, name, g)


def theirs(work: Path, repo: Path, task: str, box: bool, image: str = 'image.png'):
    "Run their SegmentationModule / CountingModule on the image, recording every stage (their venv only)."
    os.environ['HF_HUB_OFFLINE'] = '1'
    os.environ['HF_HOME'] = str(work / 'hf_home')  # leave the user's hub cache alone
    sys.path.insert(0, str(repo))
    os.chdir(work)  # their RunConfig makes ./outputs
    import torch
    import torch.nn.functional as F

    _patch_offline(work)
    from _utils import attn_utils_new as au

    t0 = time.perf_counter()
    if task == 'seg':
        from segmentation import SegmentationModule as Module
    else:
        from counting import CountingModule as Module
    m = Module(use_box=box)
    ck = torch.load(work / f'{task}.pth', map_location='cpu')
    res = m.load_state_dict(ck, strict=False)
    m.eval()
    load_s = time.perf_counter() - t0
    cap, calls = {}, {'net': 0}

    tok = m.stable.tokenizer(m.placeholder_token + ' repetitive objects', padding='max_length', max_length=77)
    cap['input_ids'] = np.asarray(tok['input_ids'])
    cap['task_row'] = m.stable.text_encoder.get_input_embeddings().weight[m.placeholder_token_id]

    def vae_after(out):
        cap['vae_mean'], cap['vae_std'] = out.latent_dist.mean, out.latent_dist.std

    _wrap(m.stable.vae, 'encode', before=lambda x, *a, **k: cap.__setitem__('vae_input', x), after=vae_after)

    def unet_before(sample, t, ehs, *a, **k):
        cap['noisy_latents'], cap['cond'] = sample, ehs

    _wrap(m.stable.unet, 'forward', before=unet_before, after=lambda out: cap.__setitem__('features', out[1][-1]))

    def agg_after_factory():
        f = au.aggregate_attention

        def g(prompts, attention_store, res, from_where, is_cross, select):
            out = f(prompts, attention_store, res, from_where, is_cross, select)
            cap[f'agg_{"cross" if is_cross else "self"}_{res}'] = out[..., :8] if is_cross else out
            return out

        au.aggregate_attention = g

    agg_after_factory()
    sc_calls = []
    f_sc = au.self_cross_attn

    def sc(self_attn, cross_attn):
        out = f_sc(self_attn, cross_attn)
        sc_calls.append((cross_attn.detach().clone(), out.detach().clone()))
        return out

    au.self_cross_attn = sc
    if task == 'seg':
        reg = m.counting_adapter.regressor
        vm = reg.vit_model

        def reg_before(img, attn_stack, feature_list):
            cap['img_raw'], cap['attn_stack'] = img, attn_stack

        _wrap(reg, 'forward', before=reg_before)
        _wrap(vm, 'eval', before=lambda x, feat=None, **k: cap.__setitem__('vit_feat_image', feat))
        net_in, net_out = [], []

        def net_before(x, feat=None):
            net_in.append((x.detach().clone(), feat.detach().clone()))

        _wrap(vm.net, 'forward', before=net_before, after=lambda out: net_out.append(out[0].detach().clone()))

        def run_net_before(x, feat=None, **k):
            cap['cp_image'], cap['cp_feat'] = x, feat

        def run_net_after(out):
            cap['dP'], cap['cellprob'] = out[0], out[1]

        _wrap(vm, '_run_net', before=run_net_before, after=run_net_after)

        def cm_before(shape, dP, cellprob, **k):
            cap['dP_resized'], cap['cellprob_resized'] = dP, cellprob

        _wrap(vm, '_compute_masks', before=cm_before, after=lambda out: cap.__setitem__('masks_512', out))
    else:
        loca = m.loca_model
        _wrap(loca, 'forward_before_reg', before=lambda x, b: cap.update(loca_input=x, loca_boxes=b),
              after=lambda out: cap.__setitem__('response', out['feature_bf_regression']))  # fmt: skip

        def reg_before(loca_out, attn_stack, feat):
            cap['attn_stack'] = attn_stack

        _wrap(loca, 'forward_reg', before=reg_before, after=lambda out: cap.__setitem__('density_512', out['pred']))
    if box:
        _wrap(m.counting_adapter.adapter, 'forward', after=lambda out: cap.__setitem__('exemplar_emb', out))
    torch.manual_seed(SEED)
    t1, c1 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        out = m(str(work / image), box=BOX if box else None)
    run_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    if task == 'seg':
        cap['masks'] = out
        if net_in:
            cap['net_x'] = torch.cat([a for a, _ in net_in])
            cap['net_feat'] = torch.cat([b for _, b in net_in])
            cap['net_y'] = torch.cat(net_out)
        calls['net'] = len(net_in)
    else:
        cap['density'], cap['count'] = out[0], np.float64(out[1])
    for i, (c, o) in enumerate(sc_calls):
        cap[f'sc_in_{i}'], cap[f'sc_out_{i}'] = c, o
    # their per-token 64x64 cross maps: each resolution's layer mean upsampled (their interpolate), then averaged
    c64 = [F.interpolate(cap[f'agg_cross_{r}'].permute(2, 0, 1)[None], scale_factor=64 // r, mode='bilinear')
           for r in (32, 16)]  # fmt: skip
    cap['cross64'] = torch.cat(c64).mean(0)
    tag = f'{task}{"_box" if box else ""}{"_512" if image != "image.png" else ""}'
    save_npz(work / f'theirs_{tag}.npz', cap)
    meta = dict(task=task, box=box, image=image, load_s=load_s, run_s=run_s, cpu_s=cpu_s, peak_gb=peak_gb(),
                missing=len(res.missing_keys), unexpected=list(res.unexpected_keys), net_calls=calls['net'],
                torch=torch.__version__, self_cross_calls=len(sc_calls))  # fmt: skip
    (work / f'theirs_{tag}.json').write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


# ----------------------------------------------------------------------------------------------- ours (our env)
def ours(work: Path, task: str, box: bool, image: str = 'image.png', stages: bool = True, vit_tiles: int = 9):
    """Our released path on the same weights and image: matcher (authors' defaults, task token as run), LOCA
    responses / projector, then for 'cnt' `loca_density` + `resize_density`, for 'seg' the head's feature image and
    the Cellpose-SAM ViT on the same 9 tiles their Cellpose pipeline cut (read from their run), and Cellpose's
    dynamics on their flows. Timed: everything up to the head outputs (stage extras are computed after)."""
    import torch
    from PIL import Image
    from microscopy_toolkit.models.sd import load_sd
    from microscopy_toolkit.matching.model import Matcher
    from microscopy_toolkit.matching.exemplar import IMAGENET_MEAN, IMAGENET_STD
    from microscopy_toolkit.matching.heads import resize_density
    from microscopy_toolkit.matching import released as R

    tag = f'{task}{"_box" if box else ""}{"_512" if image != "image.png" else ""}'
    th = dict(np.load(work / f'theirs_{tag}.npz')) if task == 'seg' else {}
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    sd = load_sd(path=work / 'sd', device='cpu', dtype=torch.float32)
    matcher = Matcher(sd, seed=SEED, task_token='as_run')
    model = R.load_released(R.ReleasedSegmentation() if task == 'seg' else R.ReleasedCounting(), work / f'{task}.pth')
    model.eval()
    load_s = time.perf_counter() - t0
    img = np.asarray(Image.open(work / image).convert('RGB'))
    name = 'segment' if task == 'seg' else 'count'
    enc, cap = model.exemplar_encoder, {}
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    t1, c1 = time.perf_counter(), time.process_time()
    x = R.prepare_images(R.scale_by_dtype(img), 512, normalize=False)
    cond, resp, b = None, None, None
    if box or task == 'cnt':
        b = R._count_boxes(BOX if box else None, img.shape[:2], 512)
        resp = R.loca_responses(enc, (x - mean) / std, b)
        if box:
            cap['exemplar_emb'] = model.projector(resp[-1], b)
            cond = matcher.with_exemplar(cap['exemplar_emb'], name)
    attn, feats, maps = matcher(x, cond=cond, task=name, return_maps=True)
    if task == 'seg':
        cap['vit_feat_image'] = model.head.features(attn, feats)[0]
        if 'net_x' in th:  # `vit_tiles` < 9 on a busy machine: the ViT per tile is the same work (time it, x 9)
            n = min(vit_tiles, len(th['net_x']))
            ys = [model.head.vit(torch.from_numpy(th['net_x'][i : i + 8]), torch.from_numpy(th['net_feat'][i : i + 8]))
                  for i in range(0, n, 8)]  # fmt: skip
            cap['net_y'] = torch.cat(ys)[:n]
    else:
        g = resp[-1].shape[-1]
        d = R.loca_density(enc, resp, R._to_grid(attn, g), R._to_grid(feats, g))
        cap['density_512'] = d
        cap['density'] = resize_density(d[:, 0], tuple(img.shape[:2]), mode='bicubic')[0]  # as released_count
        cap['count'] = np.float64(cap['density'].sum())
    if task == 'seg' and 'dP_resized' in th:
        from cellpose import dynamics

        cap['masks_512'] = dynamics.resize_and_compute_masks(  # their (2, 1, H, W) and (1, H, W): one image
            th['dP_resized'][:, 0], th['cellprob_resized'][0], niter=200, cellprob_threshold=0.0, flow_threshold=0.4,
            min_size=15, max_size_fraction=0.4)  # fmt: skip
    run_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    if stages:
        cap['input_image'], cap['vae_input'] = (x - mean) / std, x - 0.5
        cap['vae_mean'] = sd.vae.encode(x - 0.5).latent_dist.mean
        cap['noisy_latents'] = matcher.latents(x)
        cap['cond'] = cond if cond is not None else matcher.template_cond(name)
        cap['attn_stack'], cap['features'] = attn, feats
        cap['cross64'] = maps.cross[0]
        cap['cross_tokens'] = np.asarray(maps.tokens)
        cap['self_64'] = maps.self_maps[64][0].reshape(64, 64, 4096)
        for p in maps.tokens:
            cap[f'sc_raw_{p}'] = maps.self_cross(maps.token(p), normalize=False)[0]
        if resp is not None:
            cap['response'] = resp[-1]
    save_npz(work / f'ours_{tag}.npz', cap)
    meta = dict(task=task, box=box, image=image, load_s=load_s, run_s=run_s, cpu_s=cpu_s, peak_gb=peak_gb(),
                torch=torch.__version__, vit_tiles=int(len(cap.get('net_y', []))))  # fmt: skip
    (work / f'ours_{tag}.json').write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


def probe_image(size: int = 128, seed: int = SEED) -> np.ndarray:
    "`(size, size, 3)` float32 in [0, 1] for the LOCA probe (numpy's generator: the same in every environment)."
    return np.random.default_rng(seed + 7).random((size, size, 3), dtype=np.float64).astype(np.float32)


def tile_inputs(seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    "`(300, 280, 3)` image and feature image (float32) for the tiling fixture, from numpy's generator."
    rng = np.random.default_rng(seed + 13)
    return rng.random((300, 280, 3)).astype(np.float32), rng.normal(size=(300, 280, 3)).astype(np.float32)


PROBE_BOXES = [[10.0, 12.0, 40.0, 44.0], [70.0, 60.0, 100.0, 90.0]]  # probe boxes, pixels of the 128 px probe image


def synthetic_labels(size: int = 96, seed: int = SEED) -> np.ndarray:
    "`(size, size)` uint16 labels: non-overlapping discs and ellipses (for the decode fixture)."
    rng = np.random.default_rng(seed + 11)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.uint16)
    for i in range(1, 13):
        cy, cx = rng.uniform(8, size - 8, 2)
        ry, rx = rng.uniform(4, 9, 2)
        disc = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        lab[disc & (lab == 0)] = i
    return lab


def theirs_fixtures(work: Path, repo: Path, out: Path):
    """(their venv) Small records of their code for CI: Cellpose dynamics (their modified copy) on synthetic and on
    random-weight flows, their Cellpose image normalisation, their density resize + count, LOCA probe outputs."""
    os.environ['HF_HUB_OFFLINE'], os.environ['HF_HOME'] = '1', str(work / 'hf_home')
    sys.path.insert(0, str(repo))
    os.chdir(work)
    import cv2
    import torch

    _patch_offline(work)
    from models.seg_post_model import dynamics, transforms

    rec = {}
    lab = synthetic_labels()
    flows = dynamics.masks_to_flows_gpu(lab, device=torch.device('cpu'))
    flows = np.asarray(flows[0] if isinstance(flows, tuple) else flows, np.float32)
    rec['syn_labels'], rec['syn_dP'] = lab, 5 * flows  # the network's scale (Cellpose trains on 5 x unit flows)
    rec['syn_cellprob'] = np.where(lab > 0, 4.0, -4.0).astype(np.float32)
    rec['syn_masks'] = dynamics.resize_and_compute_masks(rec['syn_dP'], rec['syn_cellprob'], niter=200,
                                                         cellprob_threshold=0.0, flow_threshold=0.4, min_size=15)
    th = np.load(work / 'theirs_seg.npz')
    sl = (slice(200, 296), slice(200, 296))
    rec['net_dP'] = th['dP_resized'][:, 0, sl[0], sl[1]].astype(np.float32)
    rec['net_cellprob'] = th['cellprob_resized'][0][sl].astype(np.float32)
    # random weights give no cell at their thresholds: the crop is decoded with looser ones, so that it has masks
    rec['net_masks'] = dynamics.resize_and_compute_masks(rec['net_dP'], rec['net_cellprob'], niter=200,
                                                         cellprob_threshold=-1.0, flow_threshold=0.0, min_size=15)
    rec['norm_in'] = (probe_image(64) * 255).astype(np.float32)
    from models.seg_post_model.models import normalize_default  # their eval's parameters, as it passes them

    params = {**normalize_default, 'normalize': True, 'invert': False}
    rec['norm_out'] = transforms.normalize_img(rec['norm_in'][None].copy(), **params)[0]
    from models.seg_post_model import core

    class PixelNet(torch.nn.Module):  # per-pixel linear stand-in for the ViT: isolates their tiling and blending
        device, dtype = torch.device('cpu'), torch.float32

        def forward(self, x, feat=None):
            return x + 0.5 * feat, torch.ones(len(x), 256)

    img, feat = tile_inputs()
    yf, _ = core.run_net(PixelNet(), img[None], feat=feat[None], bsize=256, batch_size=8, tile_overlap=0.1)
    rec['tiles_out'] = yf[0, ::4, ::4]
    rec['tiles_sum'] = np.float64(yf.astype(np.float64).sum())
    d = np.load(work / 'theirs_cnt.npz')['density_512'].squeeze().astype(np.float32)[::8, ::8].copy()
    rec['den_in'] = d  # their formula applied to a small density: INTER_CUBIC to (w, h), renormalised to the count
    r = cv2.resize(d, (40, 48), interpolation=cv2.INTER_CUBIC)
    rec['den_out'] = r / r.sum() * d.sum()
    from models.enc_model.loca import build_model

    loca = build_model().eval()
    ck = torch.load(work / 'cnt.pth', map_location='cpu')
    loca.load_state_dict({k[len('loca_model.') :]: v for k, v in ck.items() if k.startswith('loca_model.')})
    from models.model import adapter_roi_loca

    ad = adapter_roi_loca().eval()
    ad.load_state_dict({k[len('counting_adapter.adapter.') :]: v for k, v in ck.items()
                        if k.startswith('counting_adapter.adapter.')})  # fmt: skip
    x = torch.from_numpy(probe_image()).permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    boxes = torch.tensor(PROBE_BOXES)[None]
    with torch.no_grad():
        resp = loca.forward_before_reg((x - mean) / std, boxes)['feature_bf_regression']
        rec['loca_response'] = resp[0].numpy()
        rec['loca_emb'] = ad(resp, boxes)[0].numpy()
    rec['cnt_weight_sum'] = np.float64(sum(float(v.double().sum()) for v in ck.values()))
    np.savez(out, **rec)
    print('wrote', out, {k: np.asarray(v).shape for k, v in rec.items()})


# ----------------------------------------------------------------------------------------------- compare (any env)
PAIRS = [  # (stage, their key, our key)
    ('image for the VAE (x - 0.5)', 'vae_input', 'vae_input'),
    ('VAE posterior mean', 'vae_mean', 'vae_mean'),
    ('noisy latents (sample + noise, t=20)', 'noisy_latents', 'noisy_latents'),
    ('text conditioning (77 x 768)', 'cond', 'cond'),
    ('exemplar embedding (projector)', 'exemplar_emb', 'exemplar_emb'),
    ('LOCA response map', 'response', 'response'),
    ('self attention 64x64 (heads 4-7, 5 layers)', 'agg_self_64', 'self_64'),
    ('UNet features (last up block)', 'features', 'features'),
    ('attention stack (4 x 64 x 64)', 'attn_stack', 'attn_stack'),
    ('seg head feature image (inc_0)', 'vit_feat_image', 'vit_feat_image'),
    ('Cellpose-SAM ViT on the 9 tiles (flows, cellprob)', 'net_y', 'net_y'),
    ('density before resizing (512 px)', 'density_512', 'density_512'),
    ('density at image size', 'density', 'density'),
    ('count', 'count', 'count'),
]


def _diff(a, b) -> dict:
    a, b = np.asarray(a, np.float64).squeeze(), np.asarray(b, np.float64).squeeze()
    if a.shape != b.shape:
        return dict(error=f'shapes differ: theirs {a.shape}, ours {b.shape}')
    d = np.abs(a - b)
    rng = float(a.max() - a.min()) if a.size > 1 else float(abs(a))
    scale = rng if rng > 0 else float(np.abs(a).max())  # a constant map: relative to its value
    rel = float(d.max() / scale) if scale > 0 else float(d.max())
    top = float(np.abs(a).max())
    rel_max = float(d.max() / top) if top > 0 else float(d.max())
    return dict(max_abs=float(d.max()), rel_to_range=rel, rel_to_max=rel_max, range=rng, shape=list(a.shape))


def compare_one(th: dict, us: dict) -> dict:
    "Max |diff| per stage of one run (their recorded values against ours)."
    out = {}
    for stage, k1, k2 in PAIRS:
        if k1 in th and k2 in us:
            a = th[k1][: len(us[k2])] if k1 == 'net_y' else th[k1]  # ours may cover the first tiles only
            out[stage] = _diff(a, us[k2])
    if 'cross64' in th and 'cross_tokens' in us:
        for i, p in enumerate(us['cross_tokens']):
            out[f'cross map, token {int(p)}'] = _diff(th['cross64'][int(p)], us['cross64'][i])
        i = 0
        while f'sc_in_{i}' in th:  # their self_cross_attn calls: find the token by its input map
            c = th[f'sc_in_{i}'].squeeze()
            p = min(us['cross_tokens'], key=lambda p: np.abs(th['cross64'][int(p)] - c).max())
            stage = f'self-cross map (call {i}: token {int(p)}, unnormalised)'
            out[stage] = _diff(th[f'sc_out_{i}'], us[f'sc_raw_{p}'])
            i += 1
    if 'masks_512' in th and 'masks_512' in us:
        a, b = th['masks_512'], us['masks_512']
        out['masks (Cellpose dynamics on their flows, 512 px)'] = dict(
            equal_fraction=float((a == b).mean()), labels_theirs=int(a.max()), labels_ours=int(b.max()))
    return out


def compare(work: Path) -> dict:
    report = {}
    for f in sorted(work.glob('theirs_*.npz')):
        tag = f.stem[len('theirs_') :]
        if tag == 'fixtures':
            continue
        o = work / f'ours_{tag}.npz'
        entry = {'theirs': json.loads((work / f'theirs_{tag}.json').read_text())}
        if o.is_file():
            entry['ours'] = json.loads((work / f'ours_{tag}.json').read_text())
            entry['stages'] = compare_one(dict(np.load(f)), dict(np.load(o)))
        report[tag] = entry
    (work / 'report.json').write_text(json.dumps(report, indent=1))
    for tag, e in report.items():
        print(f'== {tag}: theirs {e["theirs"]["run_s"]:.1f} s / {e["theirs"]["peak_gb"]:.2f} GB', end='')
        if 'ours' in e:
            print(f'; ours {e["ours"]["run_s"]:.1f} s / {e["ours"]["peak_gb"]:.2f} GB')
            for stage, d in e['stages'].items():
                print(f'  {stage}: {d}')
        else:
            print()
    return report


def _sh(cmd: list, **kw):
    print('$', ' '.join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def run_all(work: Path, repo: Path, python: str, with_512: bool = False):
    "make, then for each case their run and ours (never at the same time), then compare."
    me = Path(__file__).resolve()
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    _sh([sys.executable, me, 'make', '--work', work], env=env)
    cases = [('seg', False, 'image.png'), ('cnt', False, 'image.png'), ('cnt', True, 'image.png'),
             ('seg', True, 'image.png')]  # fmt: skip
    if with_512:  # the processing size is 512 px either way; this adds only the resizing of a 512 px input
        cases += [('seg', False, 'image512.png'), ('cnt', False, 'image512.png')]
    for task, box, image in cases:
        flags = ['--task', task, '--image', image] + (['--box'] if box else [])
        _sh([python, me, 'theirs', '--work', work, '--repo', repo, *flags], env={**os.environ, 'HF_HUB_OFFLINE': '1'})
        _sh([sys.executable, me, 'ours', '--work', work, *flags], env=env)
    compare(work)


FIXTURE_NPZ = ROOT / 'tests' / 'fixtures' / 'mm_equivalence.npz'
FIXTURE_JSON = ROOT / 'tests' / 'fixtures' / 'mm_equivalence.json'


def fixtures(work: Path, repo: Path, python: str):
    "Their small records (`theirs-fixtures`, their venv) and the run's per-stage numbers (report.json) into tests/."
    if python:  # else: theirs_fixtures.npz from an earlier `theirs-fixtures` step
        me = Path(__file__).resolve()
        _sh([python, me, 'theirs-fixtures', '--work', work, '--repo', repo], env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    rec = dict(np.load(work / 'theirs_fixtures.npz'))
    if (work / 'theirs_cnt_box.npz').is_file():  # mode S: their boxes at 512 px and the projector's exemplar token
        box = np.load(work / 'theirs_cnt_box.npz')
        rec['box_loca_boxes'], rec['box_exemplar_emb'] = box['loca_boxes'], box['exemplar_emb']
    if (work / 'theirs_seg_box.npz').is_file():  # their seg head's feature image from its recorded inputs (box run)
        import torch

        seg = np.load(work / 'theirs_seg_box.npz')
        rec['seghead_attn13'] = seg['attn_stack'][0, [1, 3]]  # the two attention channels the head reads
        rec['seghead_feat_mean'] = seg['features'][0].astype(np.float64).mean(0).astype(np.float32)
        rec['seghead_out'] = seg['vit_feat_image'][:, ::8, ::8]  # (3, 64, 64) of the 512 px image
        ck = torch.load(work / 'seg.pth', map_location='cpu', mmap=True, weights_only=True)
        for k in ('norm.weight', 'norm.bias', 'inc_0.weight', 'inc_0.bias'):
            rec['seghead_' + k.replace('.', '_')] = ck['counting_adapter.regressor.' + k].numpy()
    small = {k: (v.astype(np.float16) if k == 'loca_response' else v) for k, v in rec.items()}
    np.savez_compressed(FIXTURE_NPZ, **small)
    report = json.loads((work / 'report.json').read_text())
    keep = ('run_s', 'cpu_s', 'load_s', 'peak_gb', 'torch', 'missing', 'unexpected', 'net_calls', 'vit_tiles')
    slim = {tag: {side: {k: e[side][k] for k in keep if k in e[side]} for side in ('theirs', 'ours') if side in e}
            | {'stages': e.get('stages', {})} for tag, e in report.items()}  # fmt: skip
    meta = dict(seed=SEED, box=BOX, probe_boxes=PROBE_BOXES, harness='tools/mm_equivalence.py', runs=slim)
    FIXTURE_JSON.write_text(json.dumps(meta, indent=1) + '\n')
    print(f'wrote {FIXTURE_NPZ} ({FIXTURE_NPZ.stat().st_size / 1e3:.0f} kB) and {FIXTURE_JSON}')


# ----------------------------------------------------------------------------------------------- command line
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('step', choices=['make', 'theirs', 'ours', 'compare', 'all', 'theirs-fixtures', 'fixtures'])
    p.add_argument('--work', type=Path, required=True, help='scratch folder for weights, image and recorded stages')
    p.add_argument('--repo', type=Path, help="the authors' repository (phoebehxf/MicroscopyMatching)")
    p.add_argument('--python', default=None, help="their venv's python (for 'all' and 'fixtures')")
    p.add_argument('--task', choices=['seg', 'cnt'], default='seg')
    p.add_argument('--box', action='store_true', help='with one exemplar box (mode S)')
    p.add_argument('--image', default='image.png', help="'image.png' (256 px) or 'image512.png' (time/memory)")
    p.add_argument('--vit-tiles', type=int, default=9, help="'ours --task seg': run the ViT on the first N tiles")
    p.add_argument('--with-512', action='store_true', help="'all': also run 512 px input images")
    a = p.parse_args(argv)
    work = a.work.resolve()
    if a.step == 'make':
        make(work)
    elif a.step == 'theirs':
        theirs(work, a.repo.resolve(), a.task, a.box, a.image)
    elif a.step == 'ours':
        ours(work, a.task, a.box, a.image, stages=a.image == 'image.png', vit_tiles=a.vit_tiles)
    elif a.step == 'compare':
        compare(work)
    elif a.step == 'theirs-fixtures':
        theirs_fixtures(work, a.repo.resolve(), work / 'theirs_fixtures.npz')
    elif a.step == 'all':
        run_all(work, a.repo.resolve(), a.python, a.with_512)
    else:
        fixtures(work, a.repo and a.repo.resolve(), a.python)


if __name__ == '__main__':
    main()
