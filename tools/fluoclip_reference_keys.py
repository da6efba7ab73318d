"""Record the parameter names and shapes of a model built by the authors' FluoCLIP code (a Lightning `Runner` holds
`module` = FluoCLIP and the alias `prompt_learner`), as a fixture for the checkpoint key mapping in
nbs/14_focus.fluoclip.ipynb. Run outside the repository's environment and CI, with the public repository unpacked:

    git --git-dir=<mirror of FluoCLIP/FluoCLIP> archive HEAD | tar -x -C SRC
    python tools/fluoclip_reference_keys.py SRC

CLIP's RN50 weights cannot be downloaded here, so `load_clip_to_cpu` is replaced by the bundled `clip.model.CLIP` built
with RN50's hyper-parameters at random: the names and shapes are those of the real model. PyTorch Lightning is not
needed: a plain module with the Runner's two children gives the Runner's state-dict keys. Writes
tests/fixtures/focus_fluoclip_reference_keys.json (stage-2 model, the released config).
"""
import copy, json, os, re, sys
from pathlib import Path


def main(src: str):
    sys.path[:0] = [src, str(Path(src) / 'CLIP')]
    os.chdir(src)  # the config names data/fluo_stains.yaml relative to the repository
    import torch, yaml
    from clip import model as clip_model
    import fluoclip.models.fluoclip as F
    from fluoclip.models import MODELS

    F.load_clip_to_cpu = lambda *a, **k: clip_model.CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).float()
    cfg = yaml.safe_load(open(Path(src) / 'config.yaml'))['runner_cfg']['model_cfg']

    class RunnerLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = MODELS.build({**copy.deepcopy(cfg), 'stage_num': 2})
            self.prompt_learner = self.module.prompt_learner

    sd = RunnerLike().state_dict()
    dup = re.compile(r'^(prompt_learner\.|module\.prompt_learner\.clip_model\.(?!token_embedding))')
    keys = {k: list(v.shape) for k, v in sd.items() if not dup.match(k)}
    out = {'source': 'FluoCLIP/FluoCLIP b1793a4f, config.yaml, stage 2, RN50 built at random',
           'n_state_dict_keys': len(sd), 'left_out': 'prompt_learner.* (alias of module.prompt_learner.*) and '
           'module.prompt_learner.clip_model.* (a copy of CLIP) except its token_embedding', 'keys': keys}
    dest = Path(__file__).resolve().parents[1] / 'tests' / 'fixtures' / 'focus_fluoclip_reference_keys.json'
    dest.write_text(json.dumps(out, indent=0) + '\n')
    print(dest, len(keys), 'keys kept of', len(sd))


if __name__ == '__main__':
    main(sys.argv[1])
