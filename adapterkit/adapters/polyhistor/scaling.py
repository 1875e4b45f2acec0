"""Layer-wise Scaling Kernels of Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv
2210.03265), as the authors' Swin code builds them: a block c times as wide as the first
stage gets c generated weight sets of the first stage's sizes (one per layer embedding of the
block) and combines them with its kernels into its own adapter.

For the sets W_0 ... W_{c-1} (k_0 x d_0 for D, d_0 x k_0 for U) and the block's kernel
K (c, c, c): W = sum_i K_i (x) W_i (``kernel_front``; W_i (x) K_i otherwise), one kernel for
D and U; the biases b = sum_i kappa_i (x) b_i with kappa (c, c), one for b_D and b_U. The
kernels are drawn N(0, 1), as the authors'; one set per block and adapter position, shared by
the tasks (the weight sets are per task).
"""
import torch
from torch import nn

from ..hyperformer import AdapterWeights


def kron_sum(kernel: torch.Tensor, sets: torch.Tensor, front: bool) -> torch.Tensor:
    """sum_i K_i (x) W_{t,i} for every task t: K (c, c, c), W (T, c, m, n) -> (T, c m, c n);
    for biases K (c, c), W (T, c, m) -> (T, c m)."""
    if sets.dim() == 3:
        return torch.einsum('ia,tix->tax' if front else 'ia,tix->txa', kernel, sets).flatten(1)
    out = torch.einsum('iab,tixy->taxby' if front else 'iab,tixy->txayb', kernel, sets)
    return out.flatten(3).flatten(1, 2)


class ScalingKernels(nn.Module):
    """The kernels of one block's adapter: ``weight`` (c, c, c) and ``bias`` (c, c);
    ``forward(sets)`` combines the c weight sets (T, c, ...) into the block's
    ``AdapterWeights``."""

    def __init__(self, scale: int, front: bool = True):
        super().__init__()
        self.scale, self.front = scale, front
        self.weight = nn.Parameter(torch.randn(scale, scale, scale))
        self.bias = nn.Parameter(torch.randn(scale, scale))

    def forward(self, sets: AdapterWeights) -> AdapterWeights:
        return AdapterWeights(*(kron_sum(self.bias if w.dim() == 3 else self.weight, w,
                                         self.front) for w in sets[:4]))

    def extra_repr(self) -> str:
        return f'scale={self.scale}, front={self.front}'
