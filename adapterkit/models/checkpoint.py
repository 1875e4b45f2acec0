"""Adapter-only checkpoints and merged exports of a MultiTaskModel, as safetensors files.

Both kinds are one ``.safetensors`` file keyed like ``MultiTaskModel.state_dict()``
(``backbone.<timm name>``, ``heads.<task>.<name>``); its metadata holds
``adapterkit_format`` (``adapter-only`` or ``merged``) and ``config``, the text of the
config it belongs to (with the ``--cfg-options`` it was used with).

- **Adapter-only** (``save_adapter`` / ``load_adapter``): everything that is not the frozen
  pretrained backbone: the backbone tensors the strategies train (injected layers and
  unfrozen pretrained parts, each strategy's ``trainable_state_dict``) and all of the model
  outside the backbone (the heads' parameters and buffers, e.g. BatchNorm statistics).
  Loading puts the config's pretrained file into the backbone first and this state on top,
  so the model is exactly the trained one.
- **Merged** (``save_merged``): every mergeable delta folded into the backbone weights and
  the injected tensors left out, so the backbone part has exactly the keys of a plain timm
  Swin with ``num_classes=0`` and loads into ``timm.create_model(arch, img_size=...,
  num_classes=0)`` with no missing or unexpected keys. A strategy that keeps parts which
  cannot fold (MTLoRA's task branches, its ``merged_extra_state_dict``) adds them under
  their backbone names: they are then the only extra keys. timm's Swin ends in a LayerNorm
  that the backbone drops (its taps never use it, so it was never trained); the file holds
  it at timm's initial values (weight 1, bias 0), which still normalise: the adapted
  backbone's last tap is timm's ``forward_intermediates()[-1]``, or ``forward_features``
  once ``model.norm = nn.Identity()``. A model whose tasks have weights of their own
  (PerTask) merges one task (``save_merged(..., task=...)``): that task's weights, that
  task's head only, and its name under the metadata key ``task``.

Runner checkpoints (``iter_*.pth``) stay mmengine's own: full state for exact resumption.

Checkpoints of a method's reference code (``convert_foreign``) are converted by the model's
own strategies (``AdapterStrategy.convert_state_dict``: MTLoRA's, a plugin's), for
``adapterkit convert``.
"""
import os.path as osp
from typing import Dict, Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError, ConfigError, MissingFileError
from ..fileio import atomic_write

FORMAT_KEY = 'adapterkit_format'
ADAPTER_ONLY = 'adapter-only'
MERGED = 'merged'
BACKBONE = 'backbone.'


# ------------------------------------------------------------------ state
def adapter_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state minus the frozen pretrained backbone."""
    state = {}
    for strategy in model.adapters:
        state.update({BACKBONE + name: tensor
                      for name, tensor in strategy.trainable_state_dict(model).items()})
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith(BACKBONE)})
    return state


def merged_state_dict(model: nn.Module, task: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The state of the model with its adaptation folded in, in plain timm backbone keys
    plus an untrained final norm (see the module docstring). With ``task``: what that task
    computes (a per-task strategy's copies of that task) and that task's head only. The
    model is left unmerged."""
    model.merge_adapters(task)
    try:
        base = model.backbone_base_params
        head = None if task is None else f'heads.{task}.'
        state = {k: v.detach().clone() for k, v in model.state_dict().items()
                 if (k[len(BACKBONE):] in base if k.startswith(BACKBONE)
                     else head is None or k.startswith(head))}
        for strategy in model.adapters:  # what could not fold (MTLoRA's task branches)
            state.update({BACKBONE + k: v.detach().clone()
                          for k, v in strategy.merged_extra_state_dict(model).items()})
    finally:
        model.unmerge_adapters()
    width = model.backbone.out_channels[-1]
    state[BACKBONE + 'norm.weight'] = torch.ones(width)
    state[BACKBONE + 'norm.bias'] = torch.zeros(width)
    return state


# ------------------------------------------------------------------ files
def save_adapter(model: nn.Module, path: str, config_text: str = '') -> None:
    """Write the adapter-only state of ``model`` to ``path`` (.safetensors)."""
    _pretrained_file(model)  # a file nobody could load back is refused before writing
    _write(adapter_state_dict(model), path, ADAPTER_ONLY, config_text)


def save_merged(model: nn.Module, path: str, config_text: str = '',
                task: Optional[str] = None) -> None:
    """Write the merged model to ``path`` (.safetensors), with ``task`` that task's (its
    name in the metadata, ``task``); refuses a strategy that cannot merge before writing
    anything."""
    _write(merged_state_dict(model, task), path, MERGED, config_text,
           {} if task is None else {'task': task})


def read_metadata(path: str) -> Dict[str, str]:
    """The metadata of an adapterkit safetensors file (format and config text)."""
    if not osp.isfile(path):
        raise MissingFileError(f'checkpoint not found: {path}', file=path)
    try:
        with safe_open(path, framework='pt') as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors reports a malformed file with its own error type
        raise CheckpointError(f'{path}: not a safetensors file ({err})', file=path) from None
    if FORMAT_KEY not in metadata:
        raise CheckpointError(f'{path}: not an adapterkit export (no {FORMAT_KEY!r} in its '
                              'metadata)', file=path)
    return metadata


def load_adapter(model: nn.Module, path: str) -> None:
    """Load an adapter-only file into a model built from its config: the config's
    pretrained backbone first, then the adapter-only state on top of it."""
    metadata = read_metadata(path)
    if metadata[FORMAT_KEY] != ADAPTER_ONLY:
        raise CheckpointError(f'{path}: a {metadata[FORMAT_KEY]} export, not an adapter-only file',
                              file=path)
    pretrained = _pretrained_file(model)
    state = load_file(path, device='cpu')
    check_keys(path, state, adapter_state_dict(model))
    model.backbone.load_pretrained(pretrained)
    model.load_state_dict(state, strict=False)


def load_weights(model: nn.Module, path: str) -> None:
    """Load a runner checkpoint (``.pth``, strictly) or an adapter-only ``.safetensors``."""
    if path.endswith('.safetensors'):
        load_adapter(model, path)
        return
    from ..compat import load_checkpoint_file
    if not osp.isfile(path):
        raise MissingFileError(f'checkpoint not found: {path}', file=path)
    checkpoint = load_checkpoint_file(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    check_keys(path, state, model.state_dict())
    model.load_state_dict(state)


# ------------------------------------------------------------------ helpers
def _pretrained_file(model: nn.Module) -> str:
    pretrained = getattr(model.backbone, 'pretrained', None)
    if not pretrained:
        raise ConfigError('an adapter-only checkpoint sits on the pretrained backbone, but '
                          'model.backbone.pretrained is not set in the config',
                          key='model.backbone.pretrained')
    return pretrained


def convert_foreign(model: nn.Module, checkpoint: dict, path: str) -> Dict[str, torch.Tensor]:
    """A checkpoint of a method's reference code (its state dict, or the whole file) in the
    model's keys: every strategy of the model converts in turn what the one before left, as
    on load (``AdapterStrategy.convert_state_dict``). One error line when no strategy
    recognises it or the result does not fit the model exactly."""
    state = checkpoint
    for strategy in model.adapters:
        converted = strategy.convert_state_dict(state)
        state = state if converted is None else converted
    if state is checkpoint:
        names = ', '.join(type(s).__name__ for s in model.adapters)
        raise CheckpointError(f'{path}: no strategy of the model ({names}) recognises its '
                              'layout as its reference code\'s', file=path)
    check_keys(path, state, model.state_dict())
    return state


def check_keys(path: str, state: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor],
               target: str = 'the model of the config') -> None:
    """One error line naming the file and the keys (up to 5 of each kind) that do not fit."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state)
                        if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys: {", ".join(missing[:5])}')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys: {", ".join(unexpected[:5])}')
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches (file vs model): ' + ', '.join(
            f'{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}' for k in mismatched[:5]))
    if problems:
        raise CheckpointError(f'{path}: does not fit {target}: ' + '; '.join(problems), file=path)


def _write(state: Dict[str, torch.Tensor], path: str, kind: str,
           config_text: Optional[str], extra: Optional[Dict[str, str]] = None) -> None:
    """Write atomically (``fileio``): a crash leaves no half-written file under ``path``."""
    if not path.endswith('.safetensors'):
        raise CheckpointError(f'{path}: an export is a .safetensors file; name it *.safetensors',
                              file=path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {FORMAT_KEY: kind, 'config': config_text or '', **(extra or {})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
