"""Full fine-tuning: every backbone parameter is trained (the MTL upper baseline)."""
from torch import nn

from ..registry import ADAPTERS
from .base import AdapterStrategy


@ADAPTERS.register_module()
class Full(AdapterStrategy):
    """Train the whole backbone. Injects nothing, so there is nothing to merge."""

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        self.mark_trainable(backbone, [name for name, _ in backbone.named_parameters()])
