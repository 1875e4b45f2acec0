"""Feature maps handed from backbone to head before their last linear map is applied."""
import contextlib
from typing import Callable, List, Optional, Union

import torch
import torch.nn.functional as F

from .recompute import recompute_in_backward


class ProjectedMap:
    """The NCHW map ``inputs @ weight.T`` (inputs NHWC (B, H, W, in), weight (out, in)),
    not yet multiplied out.

    The merges of MTLoRA's task streams end in a linear reduction (4C to 2C channels) and
    MTLoRA's head starts with one (a bias-free 1x1 conv, 2C to 18 at the first scale), so a
    head that reads a ``ProjectedMap`` multiplies the two small weights first and the map
    once, by their product (``project``): the same map, with 5 to 7 times fewer products
    per task stream, forward and backward. Any other reader gets ``materialize()``.

    Args:
        inputs: the map before ``weight``, NHWC.
        weight: the linear map still to apply, (out, in).
        redo: recomputes ``inputs`` for backward instead of keeping them (see
            ``recompute_in_backward``), or None to keep them.
    """

    def __init__(self, inputs: torch.Tensor, weight: torch.Tensor,
                 redo: Optional[Callable[[], torch.Tensor]] = None):
        self.inputs, self.weight, self.redo = inputs, weight, redo

    @property
    def shape(self) -> torch.Size:
        batch, height, width, _ = self.inputs.shape
        return torch.Size((batch, self.weight.shape[0], height, width))

    def project(self, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The map with the linear map ``weight`` (out2, out) applied to its channels, as an
        NCHW view of NHWC memory; without ``weight``, the map itself."""
        combined = self.weight if weight is None else weight @ self.weight
        with contextlib.nullcontext() if self.redo is None else \
                recompute_in_backward(self.inputs, self.redo):
            return F.linear(self.inputs, combined).permute(0, 3, 1, 2)

    def materialize(self) -> torch.Tensor:
        return self.project()


def materialize(maps: List[Union[torch.Tensor, ProjectedMap]]) -> List[torch.Tensor]:
    """The maps as tensors."""
    return [m.materialize() if isinstance(m, ProjectedMap) else m for m in maps]
