"""Hugging Face peft adapter folders, written from and read into an adapterkit model.

``save_peft`` writes the folder peft's ``save_pretrained`` would: ``adapter_config.json``
(the strategy's ``peft_form``: ``LoraConfig``'s fields) and ``adapter_model.safetensors``
(``base_model.model.<timm module>.lora_A.weight``, ...), so that

    base = timm.create_model(arch, num_classes=0, img_size=..., depths=...)
    PeftModel.from_pretrained(base, OUT)

gives the adapted backbone (timm's Swin has our module names). Beside them goes
``adapterkit_heads.safetensors``: everything of the model outside the backbone (the
heads), with the config text and the pretrained weights' SHA-256 in its metadata, as an
adapter-only file has them. peft ignores it; adapterkit reads it back, so ``adapterkit test
OUT`` needs nothing else. A folder that peft wrote holds no heads: ``load_peft`` then
refuses, unless only the backbone is wanted (``backbone_only``).

Which strategies have a peft form is theirs to say (``AdapterStrategy.peft_form``): LoRA
(per-layer ranks and scales through ``rank_pattern`` / ``alpha_pattern``) and the DoRA
plugin (``use_dora``). A folder holds one peft adapter: strategies that train nothing in
the backbone (DecoderOnly) may stand beside it, any other is one clear error. peft itself
is never imported here.
"""
import json
import math
import os.path as osp
import re
from typing import Dict, Tuple

from torch import nn

from ..compat import load_checkpoint_file
from ..errors import CheckpointError, StrategyError
from ..fileio import write_json
from ..layouts import PEFT_CONFIG
from .checkpoint import BACKBONE, adapter_state_dict, check_keys, load_state, save_state

PEFT_WEIGHTS = ('adapter_model.safetensors', 'adapter_model.bin')
HEADS = 'adapterkit_heads.safetensors'
PEFT_HEADS = 'peft-heads'  # the adapterkit_format of HEADS
PREFIX = 'base_model.model.'
# config fields whose value must be the same in a folder read back (peft's defaults)
_MUST_MATCH = dict(peft_type='LORA', bias='none', use_dora=False, fan_in_fan_out=False,
                   modules_to_save=None)


def peft_form(model: nn.Module) -> Tuple[dict, Dict[str, str]]:
    """The model's backbone adaptation in peft's terms (see the module docstring)."""
    active = [s for s in model.adapters if s.trainable_state_dict(model)]
    if len(active) != 1:
        names = ', '.join(type(s).__name__ for s in active) or 'none'
        raise StrategyError(f'a peft folder holds one adapter of the backbone; this model '
                            f'trains {len(active)} ({names})')
    form = active[0].peft_form(model)
    if form is None:
        name = type(active[0]).__name__
        raise StrategyError(f'{name}: has no Hugging Face peft equivalent (peft_form); export '
                            'it as adapterkit files (--adapter-only or --merge)', strategy=name)
    return form


def save_peft(model: nn.Module, folder: str, config_text: str = '') -> None:
    """Write ``model``'s adapter as a peft folder plus the heads file (module docstring).
    Everything is checked before the first file is written; each file is written whole."""
    config, names = peft_form(model)
    params = dict(model.backbone.named_parameters())
    tensors = {PREFIX + peft_name: params[name] for name, peft_name in names.items()}
    heads = {k: v for k, v in adapter_state_dict(model).items() if not k.startswith(BACKBONE)}
    save_state(heads, osp.join(folder, HEADS), PEFT_HEADS, config_text, model=model)
    save_state(tensors, osp.join(folder, PEFT_WEIGHTS[0]), None, None)
    write_json(osp.join(folder, PEFT_CONFIG), dict(
        config, task_type=None, inference_mode=True, base_model_name_or_path=None,
        auto_mapping=dict(base_model_class='SwinTransformer',
                          parent_library='timm.models.swin_transformer')))


def read_peft(folder: str) -> Tuple[dict, dict]:
    """``(adapter config, {peft tensor name: tensor})`` of a peft folder, names without
    peft's ``base_model.model.`` prefix."""
    with open(osp.join(folder, PEFT_CONFIG), encoding='utf-8') as f:
        config = json.load(f)
    weights = next((osp.join(folder, n) for n in PEFT_WEIGHTS
                    if osp.isfile(osp.join(folder, n))), None)
    if weights is None:
        raise CheckpointError(f'{folder}: a peft folder without {" or ".join(PEFT_WEIGHTS)}',
                              file=folder)
    loaded = load_checkpoint_file(weights, map_location='cpu')
    state = loaded.get('state_dict', loaded)
    return config, {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def load_peft(model: nn.Module, folder: str, allow_other_backbone: bool = False,
              backbone_only: bool = False) -> None:
    """Load a peft folder into a model built from a config with the same adaptation:
    strictly (every tensor, its shape and every layer's scale must fit), onto the
    config's pretrained backbone. The heads come from the folder's heads file; a folder
    without one (written by peft) loads with ``backbone_only``, leaving the heads as
    they are."""
    expected, names = peft_form(model)
    config, tensors = read_peft(folder)
    _check_config(folder, config, expected, {n.rpartition('.lora_')[0] for n in names.values()})
    inverse = {peft_name: BACKBONE + name for name, peft_name in names.items()}
    state = {inverse.get(k, k): v for k, v in tensors.items()}
    check_keys(folder, state, {BACKBONE + k: v for k, v in _params(model, names).items()},
               'the adapter of the model of the config')
    heads_path, info = osp.join(folder, HEADS), {}
    if osp.isfile(heads_path):
        heads = load_checkpoint_file(heads_path, map_location='cpu')
        state.update(heads['state_dict'])
        info = {k: v for k, v in heads['meta'].items() if k.startswith('base_')}
    elif backbone_only:
        state.update({k: v for k, v in model.state_dict().items() if not k.startswith(BACKBONE)})
    else:
        raise CheckpointError(f'{folder}: a peft folder without {HEADS} (not written by '
                              '`adapterkit export --format peft`) holds the backbone adapter '
                              'only; load it with load_peft(..., backbone_only=True)', file=folder)
    load_state(model, state, folder, allow_other_backbone, **info)


def _params(model: nn.Module, names: Dict[str, str]) -> dict:
    params = dict(model.backbone.named_parameters())
    return {name: params[name] for name in names}


def _check_config(folder: str, config: dict, expected: dict, modules: set) -> None:
    """The folder's adapter must compute what the config's does: the same kind and every
    layer scaled alike (ranks are checked by the tensors' shapes)."""
    for key, default in _MUST_MATCH.items():
        want, got = expected.get(key, default), config.get(key, default)
        if (want or None) != (got or None):
            raise CheckpointError(f'{folder}: {PEFT_CONFIG} has {key}={got!r}, the model of '
                                  f'the config needs {want!r}', file=folder)
    for module in sorted(modules):
        ours, theirs = _scaling(expected, module), _scaling(config, module)
        if not math.isclose(ours, theirs, rel_tol=1e-6):
            raise CheckpointError(f'{folder}: scales layer {module} by {theirs:g} (lora_alpha '
                                  f'/ r), the model of the config by {ours:g}', file=folder)


def _scaling(config: dict, module: str) -> float:
    """peft's LoRA scaling of ``module``: ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA),
    where ``rank_pattern`` / ``alpha_pattern`` keys match a module as peft matches them
    (the key at the end of the name, after a dot)."""
    def pick(patterns, default):
        return next((value for key, value in (patterns or {}).items()
                     if re.match(rf'(.*\.)?({key})$', module)), default)
    rank = pick(config.get('rank_pattern'), config.get('r', 8))
    alpha = pick(config.get('alpha_pattern'), config.get('lora_alpha', 8))
    return alpha / (math.sqrt(rank) if config.get('use_rslora') else rank)
