"""The strategy contract: how a parameter-efficient method adapts a backbone.

A strategy only changes ``model.backbone``: it injects layers and marks what it
trains. It never touches heads, losses or data. Strategies compose: the model
freezes the whole backbone once, then calls every strategy's ``apply`` in order,
and each one only ever turns ``requires_grad`` ON for its own parts, so the
trainable set of a composition is the union of its members' sets.

Injected layers keep the names of the parameters they wrap (``...attn.qkv.weight`` stays
``...attn.qkv.weight``) and only add their own: pretrained files still load after
injection, and merged exports have plain timm keys.
"""
from typing import Dict, List

import torch
from torch import nn


class AdapterStrategy:
    """Base class of the strategies registered in ``adapterkit.registry.ADAPTERS``."""

    #: False for a strategy whose deltas cannot be folded into the frozen weights.
    mergeable: bool = True

    def __init__(self):
        self.trained_names: List[str] = []  # backbone parameter names this strategy trains

    def apply(self, model: nn.Module) -> None:
        """Inject into ``model.backbone`` (whose parameters arrive frozen) and mark the
        parameters this strategy trains with ``requires_grad=True``."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> None:
        """Fold this strategy's deltas into the frozen weights (inference speed)."""
        if not self.mergeable:
            raise NotImplementedError(f'{type(self).__name__} cannot merge its adaptation')

    def unmerge(self, model: nn.Module) -> None:
        """Undo ``merge`` exactly (to fp32 rounding)."""
        if not self.mergeable:
            raise NotImplementedError(f'{type(self).__name__} cannot merge its adaptation')

    def trainable_state_dict(self, model: nn.Module) -> Dict[str, torch.Tensor]:
        """What must be saved to restore this adaptation on top of the pretrained backbone,
        keyed by the backbone's own parameter names."""
        params = dict(model.backbone.named_parameters())
        return {name: params[name].detach() for name in self.trained_names}

    def _train(self, backbone: nn.Module, names) -> None:
        """Mark backbone parameters trainable and remember them."""
        params = dict(backbone.named_parameters())
        for name in names:
            params[name].requires_grad_(True)
            if name not in self.trained_names:
                self.trained_names.append(name)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
