"""Where a checkpoint came from, read from its bytes and its keys (never from its suffix).

Formats (the first bytes of a file):

``safetensors``
    an 8-byte little-endian header length, then a JSON header starting with ``{``.
``torch``
    ``torch.save``'s zip archive (``PK\\x03\\x04``) or its legacy pickle (protocol 2+, first
    byte ``0x80``).
``peft``
    a folder holding ``adapter_config.json`` (Hugging Face peft's ``save_pretrained``).

Layouts (what the keys say), the ones adapterkit reads:

``microsoft``
    Swin weights as Microsoft released them: a stage's merge at its end
    (``layers.0.downsample.*``), under ``model``.
``timm``
    Swin weights in timm's names (a stage's merge at the start of the next one).
``mtlora-reference``
    a checkpoint of the MTLoRA reference code (scale-lab/MTLoRA): its ``model`` holds
    per-task ``decoders.decoders.*`` / ``downsampler.*`` or MTLoRA layers wrapping
    ``.linear.weight``, next to a pickled yacs config. Forks of that code save the same
    keys plus parts of their own (TADFormer's task prompts, prompt norms and filters,
    ``fork_key``): those are not MTLoRA's, and their strategies convert them.
``adapterkit``
    a runner checkpoint (``state_dict`` + ``meta``) or an export of adapterkit
    (``adapterkit_format`` in the safetensors metadata: adapter-only or merged).

This module imports nothing of adapterkit but the errors, so every room may ask it.
"""
import os
import os.path as osp
import re
from typing import Optional

MICROSOFT_MERGE_KEY = 'layers.0.downsample.reduction.weight'
PEFT_CONFIG = 'adapter_config.json'
# parts that forks of the MTLoRA reference code save and MTLoRA never does (TADFormer's)
_FORK_PART = re.compile(r'(^|.*\.)(task_prompts|task_prompts_up|prompt_\w+|lora_filter)(\..*|$)')

#: What a checkpoint argument may be, for the line that refuses anything else.
ACCEPTED = ("Swin weights in Microsoft's or timm's layout, an MTLoRA reference checkpoint, an "
            'adapterkit runner checkpoint, adapter-only file or merged export, or a peft '
            'adapter folder')


def file_format(path: str) -> Optional[str]:
    """``'safetensors'``, ``'torch'``, ``'peft'`` (a folder) or None, from the content."""
    if osp.isdir(path):
        return 'peft' if osp.isfile(osp.join(path, PEFT_CONFIG)) else None
    with open(path, 'rb') as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    # safetensors first: its header length may start with the byte of a pickle (0x80), a
    # torch file never has '{' at offset 8 within its size
    if len(head) == 9 and head[8:9] == b'{' and 8 + int.from_bytes(head[:8], 'little') <= size:
        return 'safetensors'
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':
        return 'torch'
    return None


def fork_key(state: dict) -> Optional[str]:
    """The first key of a part that forks of the MTLoRA reference code save and MTLoRA
    never does (TADFormer's prompts, prompt norms, filters), or None."""
    return next((key for key in state if isinstance(key, str) and _FORK_PART.fullmatch(key)),
                None)


def is_mtlora_reference(state: dict) -> bool:
    """True for a state dict in the MTLoRA reference code's layout (its decoders or
    per-task downsamplers, or an MTLoRA layer's wrapped ``.linear.weight``) without a part
    of a fork (``fork_key``)."""
    return fork_key(state) is None and any(isinstance(key, str) and (
        key.startswith(('decoders.decoders.', 'downsampler.'))
        or (key.startswith('backbone.') and key.endswith('.linear.weight')))
        for key in state)


def layout(checkpoint: dict) -> Optional[str]:
    """The layout of a loaded checkpoint (see the module docstring), or None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    if 'adapterkit_format' in meta or isinstance(checkpoint.get('state_dict'), dict) and \
            any(str(k).startswith(('backbone.', 'heads.')) for k in checkpoint['state_dict']):
        return 'adapterkit'
    state = checkpoint
    for wrapper in ('model', 'state_dict'):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if is_mtlora_reference(state):
        return 'mtlora-reference'
    if any(str(k).startswith(('layers.', 'patch_embed.')) for k in state):
        return 'microsoft' if MICROSOFT_MERGE_KEY in state else 'timm'
    return None
