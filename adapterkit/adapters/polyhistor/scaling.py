"""Layer-wise Scaling Kernels of Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv
2210.03265): a template kernel of the first stage's widths, scaled up to a block of c times
the width by a Kronecker product with a small trainable kernel of that block.

For a block of width d = c d_0 (c = 1, 2, 4, 8 on Swin) and a template T (k_0 x d_0), the
block's matrix is S (x) T with S (c x c): block (a, b) of the result is S[a, b] T, so the
template acts on contiguous groups of d_0 channels. Its bias is sigma (x) beta with sigma
(c) and the bias template beta. S starts as the identity and sigma as ones: a block's
adapter starts as c copies of the template on the diagonal. One set per block and adapter
position, shared by the tasks (the templates are per task).
"""
import torch
from torch import nn

from ..hyperformer import AdapterWeights


def kron(scale: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """S (x) T_t for every task t: S (c, c) [or (c,)], T (tasks, m, n) [or (tasks, m)]."""
    if template.dim() == 2:  # a bias: (c,) (x) (tasks, m)
        return (scale[None, :, None] * template[:, None]).flatten(1)
    out = torch.einsum('ab,tij->taibj', scale, template)
    return out.reshape(len(template), scale.shape[0] * template.shape[1],
                       scale.shape[1] * template.shape[2])


class ScalingKernels(nn.Module):
    """The kernels of one adapter: ``down`` and ``up`` (c x c), ``down_bias`` and ``up_bias``
    (c); ``forward(template)`` answers the block's ``AdapterWeights``."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        for name in ('down', 'up'):
            self.register_parameter(name, nn.Parameter(torch.eye(scale)))
            self.register_parameter(f'{name}_bias', nn.Parameter(torch.ones(scale)))

    def forward(self, template: AdapterWeights) -> AdapterWeights:
        return AdapterWeights(kron(self.down, template.down),
                              kron(self.down_bias, template.down_bias),
                              kron(self.up, template.up), kron(self.up_bias, template.up_bias))

    def extra_repr(self) -> str:
        return f'scale={self.scale}'
