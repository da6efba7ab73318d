"""A model of the authors' FluoCLIP code (stage 2, released config, random RN50 weights since CLIP's cannot be downloaded
here) against this toolkit's FluoCLIP loaded from its state dict with `load_reference_checkpoint`: same images, same
stains, logits compared. Run outside the repository's environment and CI, with the public repository unpacked in SRC:

    python tools/fluoclip_reference_equivalence.py SRC

Writes tests/fixtures/focus_fluoclip_reference_equivalence.json (the measured differences).
"""
import copy, json, os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(src: str):
    sys.path[:0] = [src, str(Path(src) / 'CLIP'), str(ROOT)]
    os.chdir(src)
    import torch, yaml
    from clip import model as clip_model
    import fluoclip.models.fluoclip as F
    from fluoclip.models import MODELS
    from microscopy_toolkit.models.clip import load_clip_backbone
    from microscopy_toolkit.focus.fluoclip import FluoCLIP, load_reference_checkpoint

    torch.manual_seed(0)
    F.load_clip_to_cpu = lambda *a, **k: clip_model.CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).float()
    cfg = yaml.safe_load(open('config.yaml'))['runner_cfg']['model_cfg']

    class RunnerLike(torch.nn.Module):  # the Lightning Runner's children: its state-dict keys
        def __init__(self):
            super().__init__()
            self.module = MODELS.build({**copy.deepcopy(cfg), 'stage_num': 2})
            self.prompt_learner = self.module.prompt_learner

    ref = RunnerLike().eval()
    pl = ref.module.prompt_learner
    with torch.no_grad():  # move the small learned parts away from their initial values
        pl.stain_embed_learner.alpha.fill_(0.5)
        for p in ref.module.adapter.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for v in pl.stain_params.values():
            v.add_(0.05 * torch.randn_like(v))
    stains = sorted(pl.stain_params.keys())  # their stain ids are the sorted names
    ours = FluoCLIP(load_clip_backbone('RN50-quickgelu', pretrained=False), stains).eval()
    load_reference_checkpoint(ours, {'state_dict': ref.state_dict()})
    x, names = torch.randn(8, 3, 224, 224), [stains[i % 4] for i in range(8)]
    with torch.no_grad():
        a = ref.module(x, names)
        b = ours(x, torch.tensor([stains.index(n) for n in names]))
    out = dict(
        source='FluoCLIP/FluoCLIP b1793a4f config.yaml, stage 2, random RN50 (QuickGELU), seed 0, 8 images of 224 px',
        max_abs_logit_difference=float((a - b).abs().max()),
        max_abs_probability_difference=float((a.softmax(1) - b.softmax(1)).abs().max()),
        argmax_agreement=float((a.argmax(1) == b.argmax(1)).float().mean()),
        logit_range=[float(a.min()), float(a.max())],
    )
    (ROOT / 'tests' / 'fixtures' / 'focus_fluoclip_reference_equivalence.json').write_text(json.dumps(out, indent=1) + '\n')
    print(out)


if __name__ == '__main__':
    main(sys.argv[1])
