"""Adapter-only checkpoints and merged exports of a MultiTaskModel, as safetensors files.

Both kinds are one safetensors file keyed like ``MultiTaskModel.state_dict()``
(``backbone.<timm name>``, ``heads.<task>.<name>``); its metadata holds
``adapterkit_format`` (``adapter-only`` or ``merged``) and ``config``, the text of the
config it belongs to (with the ``--cfg-options`` it was used with), so a file alone says
what model to build (``adapterkit test FILE``, ``adapterkit inspect FILE``).

- **Adapter-only** (``save_adapter`` / ``load_adapter``): everything that is not the frozen
  pretrained backbone: the backbone tensors the strategies train (injected layers and
  unfrozen pretrained parts, each strategy's ``trainable_state_dict``) and all of the model
  outside the backbone (the heads' parameters and buffers, e.g. BatchNorm statistics).
  Loading puts the config's pretrained file into the backbone first and this state on top,
  so the model is exactly the trained one. The metadata also holds ``base_sha256``, the
  SHA-256 of the pretrained file it was trained on (and ``base_file``, its name): loading
  it onto other backbone weights is refused unless asked for (``allow_other_backbone``,
  ``--allow-other-backbone``). Hashes are kept per process by path, mtime and size, so a
  file is hashed once however often it is loaded.
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

Loading is strict everywhere (``check_on_load``, a ``load_state_dict`` pre-hook of the
model, so mmengine's ``load_from`` too): a state must be the whole model, its adapter-only
part or a merged export of it, or the load stops with one line naming the keys that do not
fit. Files are read by content (``compat.load_checkpoint_file``), whatever their suffix.

Checkpoints of a method's reference code (``convert_foreign``) are converted by the model's
own strategies (``AdapterStrategy.convert_state_dict``: MTLoRA's, a plugin's), for
``adapterkit convert``.
"""
import collections
import hashlib
import os
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..compat import load_checkpoint_file
from ..errors import CheckpointError, ConfigError, MissingFileError
from ..fileio import atomic_write
from ..layouts import ACCEPTED, is_mtlora_reference

FORMAT_KEY = 'adapterkit_format'
ADAPTER_ONLY = 'adapter-only'
MERGED = 'merged'
BACKBONE = 'backbone.'
FILE_INFO = 'adapterkit_file'  # the file's metadata, in a state dict's torch _metadata['']
# timm's final norm, which a merged export holds and the backbone does not have
MERGED_NORM = (BACKBONE + 'norm.weight', BACKBONE + 'norm.bias')


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
    """Write the adapter-only state of ``model`` to ``path`` (.safetensors), with the
    SHA-256 of the pretrained file it sits on."""
    save_state(adapter_state_dict(model), path, ADAPTER_ONLY, config_text, model=model)


def save_merged(model: nn.Module, path: str, config_text: str = '',
                task: Optional[str] = None) -> None:
    """Write the merged model to ``path`` (.safetensors), with ``task`` that task's (its
    name in the metadata, ``task``); refuses a strategy that cannot merge before writing
    anything."""
    save_state(merged_state_dict(model, task), path, MERGED, config_text,
               extra={} if task is None else {'task': task})


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


def load_adapter(model: nn.Module, path: str, allow_other_backbone: bool = False) -> None:
    """Load an adapter-only file into a model built from its config: the config's
    pretrained backbone first, then the adapter-only state on top of it. Refused when the
    file was trained on other backbone weights, unless ``allow_other_backbone``."""
    metadata = read_metadata(path)
    if metadata[FORMAT_KEY] != ADAPTER_ONLY:
        raise CheckpointError(f'{path}: a {metadata[FORMAT_KEY]} export, not an adapter-only file',
                              file=path)
    load_file_state(model, path, allow_other_backbone)


def load_file_state(model: nn.Module, path: str, allow_other_backbone: bool = False) -> dict:
    """Load a checkpoint file (a torch or safetensors file, by content) into ``model``
    strictly: whatever ``check_on_load`` accepts. Answers the loaded checkpoint."""
    checkpoint = load_checkpoint_file(path, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: holds no state dict; adapterkit reads {ACCEPTED}',
                              file=path)
    load_state(model, state, path, allow_other_backbone)
    return checkpoint


def load_state(model: nn.Module, state: dict, path: str, allow_other_backbone: bool = False,
               **info) -> None:
    """``model.load_state_dict(state)`` under ``check_on_load`` (strict, one line naming
    the keys that do not fit), which is told where the state comes from."""
    metadata = dict(getattr(state, '_metadata', None) or {})
    described = dict(metadata.get('', {}).get(FILE_INFO, {}), path=path,
                     allow_other_backbone=allow_other_backbone, **info)
    state = collections.OrderedDict(state)  # a copy that can carry torch's _metadata
    state._metadata = dict(metadata, **{'': dict(metadata.get('', {}), **{FILE_INFO: described})})
    model.load_state_dict(state, strict=False)  # check_on_load is the strict part


# ------------------------------------------------------------------ strict loading
def check_on_load(model: nn.Module, state_dict: dict, prefix: str, local_metadata: dict,
                  *args) -> None:
    """``load_state_dict`` pre-hook of the model (after the strategies' converters): the
    state must be the whole model, its adapter-only part (the pretrained backbone is loaded
    under it here, and it must be the one it was trained on) or a merged export; anything
    else stops the load with one line naming the keys that do not fit.

    It checks every state read from a file (adapterkit's loaders and ``compat`` mark it in
    the metadata) and every other load, mmengine's ``load_from`` and ``resume`` included,
    but one that a program asks for itself with ``model.load_state_dict(state,
    strict=False)`` (``MultiTaskModel.load_state_dict`` marks it): that is left to it, as
    is a load inside FSDP (``_sharded``)."""
    info = local_metadata.get(FILE_INFO) or {}
    if getattr(model, 'lenient_load', False) and not info or _sharded(model, prefix):
        return
    path = info.get('path') or 'the loaded state dict'
    state = {key[len(prefix):]: value for key, value in state_dict.items()
             if isinstance(key, str) and key.startswith(prefix)}
    full = model.state_dict()
    if not _problems(state, full):
        return
    if info.get(FORMAT_KEY) == MERGED or all(key in state for key in MERGED_NORM):
        _check_merged(model, state, full, path)
        for key in MERGED_NORM:  # untrained and unused by the taps (module docstring)
            state_dict.pop(prefix + key, None)
        return
    adapter = adapter_state_dict(model)
    if _problems(state, adapter):
        _refuse(path, state, full, adapter)
    pretrained = _pretrained_file(model)  # an adapter-only state sits on it: load it first
    if not info.get('allow_other_backbone'):
        _check_base(path, info, pretrained)
    model.backbone.load_pretrained(pretrained)


def _refuse(path: str, state: dict, full: dict, adapter: dict) -> None:
    """One line for a state that fits neither the model nor its adapter-only part."""
    source = state.get('model') if isinstance(state.get('model'), dict) else state
    if is_mtlora_reference(source):
        raise CheckpointError(
            f'{path}: an MTLoRA reference checkpoint (scale-lab/MTLoRA) does not fit the model '
            'of the config; it loads into an MTLoRA model of its ranks and tasks (`adapterkit '
            'convert-mtlora CKPT OUT --config CONFIG` converts it and names any key that does '
            'not fit)', file=path)
    # name the keys against whichever of the two the file is closer to
    closer = min(((full, 'the model of the config'),
                  (adapter, 'the adapter-only part of the model of the config')),
                 key=lambda pair: len(_problems(state, pair[0])))
    check_keys(path, state, *closer)


def _sharded(model: nn.Module, prefix: str) -> bool:
    """True inside FSDP (the model under a wrapper's prefix, or blocks wrapped in it): its
    parameters are flat shards whose state dict is a collective, so the check is left to
    FSDP's own load."""
    return bool(prefix) or any(type(m).__name__ == 'FullyShardedDataParallel'
                               for m in model.modules())


def _problems(state: dict, expected: dict) -> set:
    """The keys that keep ``state`` from being exactly ``expected`` (BatchNorm's
    ``num_batches_tracked`` may be missing, as mmengine allows)."""
    missing = {k for k in set(expected) - set(state) if not k.endswith('num_batches_tracked')}
    mismatched = {k for k in set(expected) & set(state)
                  if getattr(state[k], 'shape', None) != expected[k].shape}
    return missing | (set(state) - set(expected)) | mismatched


def _check_merged(model: nn.Module, state: dict, full: dict, path: str) -> None:
    """A merged export fits a fresh model of its config: every key is the model's (or
    timm's final norm), and every pretrained backbone parameter and everything outside the
    backbone is there; the injected tensors it lacks stay at their identity start."""
    base = {BACKBONE + name for name in model.backbone_base_params}
    ours = {k: v for k, v in state.items() if k not in MERGED_NORM}
    expected = {k: v for k, v in full.items()
                if k in base or not k.startswith(BACKBONE) or k in ours}
    check_keys(path, ours, expected, 'the merged form of the model of the config')


def _check_base(path: str, info: dict, pretrained: str) -> None:
    recorded = info.get('base_sha256')
    if not recorded:
        return  # written before adapterkit recorded it
    actual = file_sha256(pretrained)
    if actual != recorded:
        raise CheckpointError(
            f'{path}: trained on other backbone weights ({info.get("base_file", "?")}, sha256 '
            f'{recorded[:12]}) than model.backbone.pretrained {pretrained} (sha256 '
            f'{actual[:12]}); point model.backbone.pretrained at the weights it was trained '
            'on, or pass --allow-other-backbone (allow_other_backbone=True)', file=path)


_HASHES: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """The SHA-256 of a file, computed once per (path, mtime, size) in a process."""
    stat = os.stat(path)
    key = (osp.realpath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


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


def save_state(state: Dict[str, torch.Tensor], path: str, kind: Optional[str],
               config_text: Optional[str], model: Optional[nn.Module] = None,
               extra: Optional[Dict[str, str]] = None) -> None:
    """Write ``state`` to the safetensors file ``path`` atomically (``fileio``: a crash
    leaves no half-written file), with adapterkit's metadata where ``kind`` is given: the
    kind, the config text, ``extra`` and, for state that sits on the pretrained backbone of
    ``model``, that file's SHA-256 and name (the pretrained file must be set, or nothing is
    written)."""
    if not path.endswith('.safetensors'):
        raise CheckpointError(f'{path}: an export is a .safetensors file; name it *.safetensors',
                              file=path)
    metadata = None
    if kind is not None:
        metadata = {FORMAT_KEY: kind, 'config': config_text or '', **(extra or {})}
        if model is not None:
            pretrained = _pretrained_file(model)
            metadata.update(base_sha256=file_sha256(pretrained),
                            base_file=osp.basename(pretrained))
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
