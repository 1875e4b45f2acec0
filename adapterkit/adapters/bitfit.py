"""BitFit (Ben Zaken et al., 2022): only the backbone's bias terms are trained."""
from torch import nn

from ..registry import ADAPTERS
from .base import AdapterStrategy


@ADAPTERS.register_module()
class BitFit(AdapterStrategy):
    """Train every ``*.bias`` parameter of the backbone. Injects nothing: merging is a no-op."""

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        self.mark_trainable(backbone, [name for name, _ in backbone.named_parameters()
                                       if name.endswith('.bias')])
