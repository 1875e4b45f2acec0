"""Trainable-parameter accounting, the number every PEFT comparison is judged by."""
from typing import Dict

from torch import nn


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Parameter counts of a MultiTaskModel.

    Returns ``total``, ``trainable``, ``frozen`` and the trainable breakdown:
    ``backbone_adapter`` (parameters a strategy injected), ``backbone_unfrozen``
    (pretrained backbone parameters left trainable) and ``decoders`` (task heads).
    Shared tensors are counted once.
    """
    counts = dict(total=0, trainable=0, frozen=0, backbone_adapter=0, backbone_unfrozen=0,
                  decoders=0)
    base = getattr(model, 'backbone_base_params', frozenset())
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        counts['total'] += n
        if not param.requires_grad:
            counts['frozen'] += n
            continue
        counts['trainable'] += n
        if name.startswith('backbone.'):
            key = 'backbone_unfrozen' if name[len('backbone.'):] in base else 'backbone_adapter'
            counts[key] += n
        else:
            counts['decoders'] += n
    return counts
