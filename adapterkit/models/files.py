"""Any checkpoint argument, by what it holds: load it into a model, find the config it
stores, and say what it is (``adapterkit inspect``).

The kinds (``layouts.py`` tells them apart by content, never by suffix): an adapterkit
runner checkpoint, adapter-only file or merged export, a peft adapter folder (written by
``adapterkit export --format peft`` or by peft), an MTLoRA reference checkpoint, and plain
Swin weights (Microsoft's or timm's layout).
"""
import collections
import os.path as osp
import re
from typing import Any, Dict, Optional

from torch import nn

from ..compat import load_checkpoint_file
from ..errors import CheckpointError, MissingFileError
from ..layouts import ACCEPTED, file_format, layout
from .checkpoint import BACKBONE, FORMAT_KEY, load_file_state
from .peft import HEADS, load_peft, read_peft

# the first factor of a low-rank update: its first dimension is the rank
_DOWN = re.compile(r'.*\.(lora_A|lora_shared_A|dora_A|lora_tasks_A\.[^.]+)(\.weight)?$')


def load_weights(model: nn.Module, path: str, allow_other_backbone: bool = False) -> None:
    """Load any checkpoint of ``model``, strictly, by what the file holds: a runner
    checkpoint, an adapter-only file (onto the pretrained backbone), a merged export, an
    MTLoRA reference checkpoint (into an MTLoRA model), or a peft adapter folder."""
    if not osp.exists(path):
        raise MissingFileError(f'checkpoint not found: {path}', file=path)
    if file_format(path) == 'peft':
        load_peft(model, path, allow_other_backbone=allow_other_backbone)
    else:
        load_file_state(model, path, allow_other_backbone)


def stored_config(path: str) -> Optional[str]:
    """The text of the config a file stores (adapter-only files, merged exports, peft
    folders written by adapterkit, runner checkpoints), or None."""
    return describe(path).get('config') or None


def describe(path: str) -> Dict[str, Any]:
    """What a checkpoint file or folder holds, as ordered fields: ``kind`` first, then what
    is known of strategy, ranks, tasks, counts, base weights' hash and config."""
    if not osp.exists(path):
        raise MissingFileError(f'checkpoint not found: {path}', file=path)
    if file_format(path) == 'peft':
        return _describe_peft(path)
    checkpoint = load_checkpoint_file(path, map_location='cpu')
    found = layout(checkpoint) if isinstance(checkpoint, dict) else None
    if found is None:
        raise CheckpointError(f'{path}: no known layout; adapterkit reads {ACCEPTED}',
                              file=path)
    if found == 'adapterkit':
        return _describe_adapterkit(checkpoint)
    if found == 'mtlora-reference':
        return _describe_reference(checkpoint)
    state = checkpoint
    for wrapper in ('model', 'state_dict'):
        state = state.get(wrapper, state) if isinstance(state.get(wrapper), dict) else state
    blocks = collections.Counter(k.split('.')[1] for k in state if k.startswith('layers.')
                                 and '.blocks.' in k and k.endswith('norm1.weight'))
    return dict(kind=f'Swin weights ({found} layout)',
                embed_dim=int(state['patch_embed.proj.weight'].shape[0])
                if 'patch_embed.proj.weight' in state else None,
                depths=[blocks[i] for i in sorted(blocks, key=int)],
                parameters=_count(state.values()), tensors=len(state))


def _describe_adapterkit(checkpoint: dict) -> Dict[str, Any]:
    meta, state = checkpoint.get('meta') or {}, checkpoint.get('state_dict') or {}
    kind = {'adapter-only': 'adapter-only file', 'merged': 'merged export',
            'peft-heads': 'heads of a peft folder'}.get(meta.get(FORMAT_KEY), 'runner checkpoint')
    fields = dict(kind=kind)
    config = meta.get('config') or meta.get('cfg') or ''
    fields.update(_from_config(config))
    if kind == 'runner checkpoint':
        fields.update(iteration=meta.get('iter'), epoch=meta.get('epoch'))
    fields.update(_counts(state))
    fields.update({k: meta[k] for k in ('base_sha256', 'base_file') if meta.get(k)})
    fields['config'] = config
    return fields


def _describe_peft(folder: str) -> Dict[str, Any]:
    config, tensors = read_peft(folder)
    fields = dict(kind='peft adapter folder', peft_type=config.get('peft_type'),
                  r=config.get('r'), lora_alpha=config.get('lora_alpha'),
                  use_dora=config.get('use_dora', False),
                  target_modules=config.get('target_modules'))
    fields.update({k: config[k] for k in ('rank_pattern', 'alpha_pattern') if config.get(k)})
    fields['ranks'] = _ranks(tensors)
    fields['adapter_parameters'] = _count(tensors.values())
    heads = osp.join(folder, HEADS)
    if not osp.isfile(heads):
        fields['heads'] = f'none (no {HEADS}: the backbone adapter only)'
        return fields
    described = _describe_adapterkit(load_checkpoint_file(heads, map_location='cpu'))
    fields.update(strategy=described.get('strategy'), tasks=described.get('tasks'),
                  head_values=described.get('head_values'))
    fields.update({k: described[k] for k in ('base_sha256', 'base_file', 'config')
                   if k in described})
    return fields


def _describe_reference(checkpoint: dict) -> Dict[str, Any]:
    state = checkpoint.get('model', checkpoint)
    tasks = sorted({k.split('.')[2] for k in state if k.startswith('decoders.decoders.')})
    mtlora = ((checkpoint.get('config') or {}).get('MODEL') or {}).get('MTLORA') or {}
    return dict(kind='MTLoRA reference checkpoint (scale-lab/MTLoRA; convert with '
                     '`adapterkit convert-mtlora`)',
                tasks=tasks, ranks=_ranks(state), reference_ranks=mtlora.get('R'),
                epoch=checkpoint.get('epoch'), parameters=_count(state.values()))


def _from_config(text: str) -> Dict[str, Any]:
    """Strategy and tasks from a stored config's text (nothing where it does not parse)."""
    if not text:
        return {}
    from mmengine.config import Config
    try:
        model = Config.fromstring(text, '.py').get('model') or {}
    except Exception:  # a stored text is information, not something to fail on
        return {}
    adapters = model.get('adapter') or [dict(type='Full')]
    adapters = [adapters] if isinstance(adapters, dict) else adapters
    strategy = ' + '.join(
        f"{a.get('type')}({', '.join(f'{k}={v!r}' for k, v in a.items() if k != 'type')})"
        for a in adapters)
    tasks = model.get('tasks') or []
    return dict(strategy=strategy, tasks=list(tasks))


def _counts(state: dict) -> Dict[str, Any]:
    backbone = [v for k, v in state.items() if k.startswith(BACKBONE)]
    return dict(ranks=_ranks(state), backbone_values=_count(backbone),
                head_values=_count(v for k, v in state.items() if not k.startswith(BACKBONE)))


def _ranks(state: dict) -> list:
    return sorted({int(v.shape[0]) for k, v in state.items() if _DOWN.fullmatch(k)})


def _count(tensors) -> int:
    return int(sum(t.numel() for t in tensors if hasattr(t, 'numel')))
