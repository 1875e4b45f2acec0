"""Released MTLoRA checkpoints (scale-lab/MTLoRA) in adapterkit's key layout.

The reference saves ``{'model': state_dict, 'optimizer': ..., 'config': <yacs CfgNode>, ...}``
(MTLORA.md, "Reference checkpoint layout"). Converting is renaming only, because adapterkit's
layers keep timm's names and the reference's LoRA names:

    backbone.layers.{i}.downsample.*          -> backbone.layers.{i+1}.downsample.*
        (Microsoft merges at the end of stage i, timm at the start of stage i + 1)
    *.linear.weight, *.linear.bias            -> *.weight, *.bias
        (the reference wraps the frozen layer; adapterkit's MTLoRALinear is that layer)
    downsampler.{task}.downsample_{k}.weight  -> heads.{task}.downsample.{k}.weight
    decoders.decoders.{task}.last_layer.*     -> heads.{task}.last_layer.*
    lora_shared_*, lora_tasks_*.{task}, lora_task_scale.{task}, lora_norm.*  (unchanged)

Dropped: the ``attn_mask`` and ``relative_position_index`` buffers (recomputed) and the
backbone's unused classifier ``backbone.head.*``. Any other key is an error naming it.

Forks of the reference code save the same layout with parts of their own (TADFormer's task
prompts, prompt norms and filters, converted by its plugin): a state dict holding such a
part is not MTLoRA's, so it is neither detected nor converted here.

Two ways in: ``adapterkit convert-mtlora CKPT OUT [--config CFG]`` writes an mmengine-style
checkpoint (``{'state_dict': ..., 'meta': ...}``; the CLI checks the fit to CFG), and a
model adapted by MTLoRA converts a reference state dict on load (``convert_loaded``, through
the strategy contract's ``convert_state_dict``), so ``load_from`` takes either file.
"""
import os.path as osp
import re
from typing import Callable, Dict, Optional

import torch

from ...compat import load_checkpoint_file
from ...errors import CheckpointError, MissingFileError
from ...fileio import atomic_write
from ...layouts import fork_key, is_mtlora_reference

_DROPPED = re.compile(r'.*\.(attn_mask|relative_position_index)$|backbone\.head\..*')
_RENAMES = [
    (re.compile(r'^backbone\.layers\.(\d+)\.downsample\.'),
     lambda m: f'backbone.layers.{int(m.group(1)) + 1}.downsample.'),
    (re.compile(r'\.linear\.(weight|bias)$'), lambda m: f'.{m.group(1)}'),
    (re.compile(r'^downsampler\.([^.]+)\.downsample_(\d)\.weight$'),
     lambda m: f'heads.{m.group(1)}.downsample.{m.group(2)}.weight'),
    (re.compile(r'^decoders\.decoders\.([^.]+)\.last_layer\.'),
     lambda m: f'heads.{m.group(1)}.last_layer.'),
]
_KNOWN = re.compile(r'^(backbone\.|heads\.)')


def is_reference_state_dict(state_dict: dict) -> bool:
    """True for a state dict in the reference's layout (``layouts.is_mtlora_reference``)."""
    return is_mtlora_reference(state_dict)


def convert_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The reference's model state dict (optionally under 'model') in adapterkit's keys."""
    if isinstance(state_dict.get('model'), dict):
        state_dict = state_dict['model']
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if _DROPPED.fullmatch(key):
            continue
        new = key
        for pattern, replace in _RENAMES:
            new = pattern.sub(replace, new)
        if not _KNOWN.match(new) or fork_key({key: None}):
            unknown.append(key)
        converted[new] = value
    if unknown:
        raise CheckpointError(f'not an MTLoRA reference checkpoint: {len(unknown)} keys of no '
                              f'known kind: {", ".join(unknown[:3])}')
    return converted


def read_reference_checkpoint(path: str) -> dict:
    """Load a reference checkpoint file without running any of its code: the yacs config
    the reference pickles next to the weights reads as a plain OrderedDict (``compat``)."""
    if not osp.isfile(path):
        raise MissingFileError(f'checkpoint not found: {path}', file=path)
    return load_checkpoint_file(path, map_location='cpu')


def convert_checkpoint(path: str, out: str, check: Optional[Callable[[dict], None]] = None,
                       meta: Optional[dict] = None) -> Dict[str, int]:
    """Convert the reference checkpoint ``path`` into the adapterkit checkpoint ``out``.

    ``check(converted)`` runs before anything is written and may refuse the result (the CLI's
    ``--config`` checks that it fits that config's model exactly); ``meta`` adds to the
    checkpoint's ``meta``. Returns ``{'tensors': n}``.
    """
    checkpoint = read_reference_checkpoint(path)
    state = checkpoint.get('model', checkpoint) if isinstance(checkpoint, dict) else None
    foreign = fork_key(state) if isinstance(state, dict) else None
    if foreign is not None:
        raise CheckpointError(f'{path}: not an MTLoRA reference checkpoint: it holds '
                              f'{foreign}, which MTLoRA never saves (a checkpoint of a fork '
                              'such as TADFormer: convert it with its plugin)', file=path)
    if not isinstance(state, dict) or not is_reference_state_dict(state):
        raise CheckpointError(f'{path}: not an MTLoRA reference checkpoint (no '
                              'decoders.decoders.*, downsampler.* or backbone *.linear.weight '
                              'keys)', file=path)
    try:
        converted = convert_state_dict(state)
    except CheckpointError as err:
        raise CheckpointError(f'{path}: {err}', file=path) from None
    if check is not None:
        check(converted)
    meta = dict(converted_from=osp.abspath(path), source='scale-lab/MTLoRA', **(meta or {}))
    # a failed write never leaves a half file under `out`
    atomic_write(out, lambda tmp: torch.save(dict(state_dict=converted, meta=meta), tmp))
    return dict(tensors=len(converted))


def convert_loaded(state_dict: dict) -> Optional[dict]:
    """A state dict in the reference layout, or a whole reference checkpoint (its ``model``
    entry), in adapterkit's keys; None for anything else (``MTLoRA.convert_state_dict``)."""
    source = state_dict['model'] if isinstance(state_dict.get('model'), dict) else state_dict
    return convert_state_dict(source) if is_reference_state_dict(source) else None
