"""Decoder-only: the backbone stays frozen; only the task heads learn."""
from torch import nn

from ..registry import ADAPTERS
from .base import AdapterStrategy


@ADAPTERS.register_module()
class DecoderOnly(AdapterStrategy):
    """Train nothing in the backbone (heads are trained by every strategy)."""

    def apply(self, model: nn.Module) -> None:
        pass
