"""Checkpoints of the authors' code (Min100KM/TADFormer, a fork of the MTLoRA reference code)
in this plugin's key layout.

The reference saves ``{'model': state_dict, 'config': <yacs CfgNode>, ...}``. Converting is
renaming, plus one reshape and one permutation:

    backbone.task_prompts                     -> backbone.tad_prompts, rows permuted from
        the reference's task order (its config's TASKS, else the order of its
        ``downsampler.{task}`` keys) to the model's
    backbone.layers.{i}.prompt_gate           -> backbone.layers.{i}.blocks.{last}.tad_gate
    backbone.layers.{i}.downsample.*          -> backbone.layers.{i+1}.downsample.*
        (Microsoft merges at the end of stage i, timm at the start of stage i + 1), with
        task_prompts_up -> tad_prompts_up
    *.linear.{weight,bias}                    -> *.{weight,bias}
    *.lora_shared_{A,B}                       -> *.tad_lora_{A,B}
    *.prompt_layernorm.*                      -> *.tad_prompt_norm.*
    *.lora_filter.{task}.conv2d.*             -> *.tad_filter.{task}.*          (static)
    *.lora_filter.conv.weight (9r, r, 1, 1)   -> *.tad_filter.kernel.weight (9r, r)
    *.lora_filter.conv.bias                   -> *.tad_filter.kernel.bias    (dynamic)
    *.lora_filter.chan_FilterNorm.{std,mean}  -> *.tad_filter.{gamma,beta}
    downsampler.{task}.downsample_{k}.weight  -> heads.{task}.downsample.{k}.weight
    decoders.decoders.{task}.last_layer.*     -> heads.{task}.last_layer.*

Dropped: the ``attn_mask`` and ``relative_position_index`` buffers (recomputed) and
``backbone.head.*``. Any other key is an error naming it. A model adapted by TADFormer
converts such a checkpoint on load (``TADFormer.convert_state_dict``), so ``load_from``
and ``adapterkit convert`` take the authors' files as they are.
"""
import re
from typing import Dict, List, Optional

import torch

from adapterkit.errors import CheckpointError

_DROPPED = re.compile(r'.*\.(attn_mask|relative_position_index)$|backbone\.head\..*')
_RENAMES = [
    (re.compile(r'^backbone\.layers\.(\d+)\.downsample\.'),
     lambda m: f'backbone.layers.{int(m.group(1)) + 1}.downsample.'),
    (re.compile(r'\.task_prompts_up\.'), lambda m: '.tad_prompts_up.'),
    (re.compile(r'\.linear\.(weight|bias)$'), lambda m: f'.{m.group(1)}'),
    (re.compile(r'\.lora_shared_([AB])$'), lambda m: f'.tad_lora_{m.group(1)}'),
    (re.compile(r'\.prompt_layernorm\.'), lambda m: '.tad_prompt_norm.'),
    (re.compile(r'\.lora_filter\.conv\.'), lambda m: '.tad_filter.kernel.'),
    (re.compile(r'\.lora_filter\.chan_FilterNorm\.std$'), lambda m: '.tad_filter.gamma'),
    (re.compile(r'\.lora_filter\.chan_FilterNorm\.mean$'), lambda m: '.tad_filter.beta'),
    (re.compile(r'\.lora_filter\.([^.]+)\.conv2d\.'), lambda m: f'.tad_filter.{m.group(1)}.'),
    (re.compile(r'^downsampler\.([^.]+)\.downsample_(\d)\.weight$'),
     lambda m: f'heads.{m.group(1)}.downsample.{m.group(2)}.weight'),
    (re.compile(r'^decoders\.decoders\.([^.]+)\.last_layer\.'),
     lambda m: f'heads.{m.group(1)}.last_layer.'),
]
# what the reference holds besides a Swin's own keys, after renaming
_KNOWN = re.compile(
    r'^heads\..+|^backbone\.(tad_prompts|patch_embed\..+|layers\.\d+\.downsample\.'
    r'(reduction\.weight|norm\.(weight|bias)|tad_prompts_up\.weight)|layers\.\d+\.blocks\.\d+\.'
    r'(norm[12]\.(weight|bias)|attn\.relative_position_bias_table|'
    r'(attn\.(qkv|proj)|mlp\.fc[12])\.(weight|bias|tad_lora_[AB]|tad_filter\..+)|'
    r'attn\.proj\.tad_prompt_norm\.(weight|bias)))$')
_GATE = re.compile(r'^backbone\.layers\.(\d+)\.prompt_gate$')
_DYNAMIC = '.lora_filter.conv.weight'


def is_reference_state_dict(state_dict: dict) -> bool:
    """True for a state dict in the authors' layout: its task prompts, prompt norms, filters
    or prompt up-projections."""
    return any(isinstance(key, str) and (
        key == 'backbone.task_prompts' or '.lora_filter.' in key
        or '.prompt_layernorm.' in key or '.task_prompts_up.' in key)
        for key in state_dict)


def reference_tasks(checkpoint: dict, state_dict: dict) -> List[str]:
    """The reference's task order, the order of its prompt rows: its config's TASKS, else
    the order of its per-task downsampler keys (a ModuleDict built in TASKS order)."""
    config = checkpoint.get('config') if isinstance(checkpoint, dict) else None
    if isinstance(config, dict) and config.get('TASKS'):
        return list(config['TASKS'])
    tasks = []
    for key in state_dict:
        match = re.match(r'^downsampler\.([^.]+)\.', key)
        if match and match.group(1) not in tasks:
            tasks.append(match.group(1))
    return tasks


def convert_state_dict(state_dict: Dict[str, torch.Tensor], filter: str,
                       tasks: List[str], source_tasks: List[str]) -> Dict[str, torch.Tensor]:
    """The reference's model state dict in this plugin's keys.

    Args:
        state_dict: the reference's ``model`` entry.
        filter: the model's filter ('static' or 'dynamic'); the checkpoint's must match.
        tasks: the model's tasks, in its order.
        source_tasks: the reference's task order (``reference_tasks``).
    """
    kind = 'dynamic' if any(key.endswith(_DYNAMIC) for key in state_dict) else 'static'
    if kind != filter:
        raise CheckpointError(f'TADFormer checkpoint: it has the {kind} filter, the model the '
                              f"{filter} one: set the strategy's filter={kind!r}")
    if sorted(source_tasks) != sorted(tasks):
        raise CheckpointError(f'TADFormer checkpoint: its tasks {source_tasks} are not the '
                              f"model's {tasks}")
    last = {}  # the last block of each stage, which holds the stage's gate
    for key in state_dict:
        match = re.match(r'^backbone\.layers\.(\d+)\.blocks\.(\d+)\.', key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            last[stage] = max(last.get(stage, 0), block)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if _DROPPED.fullmatch(key):
            continue
        gate = _GATE.match(key)
        if gate:
            stage = int(gate.group(1))
            converted[f'backbone.layers.{stage}.blocks.{last.get(stage, 0)}.tad_gate'] = value
            continue
        new = key
        for pattern, replace in _RENAMES:
            new = pattern.sub(replace, new)
        if new == 'backbone.task_prompts':
            new, value = 'backbone.tad_prompts', value[[source_tasks.index(t) for t in tasks]]
        elif new.endswith('.tad_filter.kernel.weight'):
            value = value.flatten(1)
        if not _KNOWN.match(new):
            unknown.append(key)
        converted[new] = value
    if unknown:
        raise CheckpointError(f'TADFormer checkpoint: {len(unknown)} keys of no known kind: '
                              f'{", ".join(unknown[:3])}')
    return converted


def convert_loaded(state_dict: dict, filter: str, tasks: List[str]) -> Optional[dict]:
    """A state dict in the authors' layout, or a whole checkpoint of theirs (its ``model``
    entry), in this plugin's keys; None for anything else."""
    source = state_dict['model'] if isinstance(state_dict.get('model'), dict) else state_dict
    if not is_reference_state_dict(source):
        return None
    return convert_state_dict(source, filter, tasks, reference_tasks(state_dict, source))
