"""PHM layers (Zhang et al., 2021, parameterized hypercomplex multiplication), as PHM adapters
and Compacter (Mahabadi et al., 2021) use them for their projections.

``PHMLinear`` maps ``in -> out`` as ``y = x H + b``, with the weight in the papers' (in x out)
layout (``nn.Linear`` would hold ``H^T``)::

    H = sum_{i=1..n} A_i (x) B_i,   A_i in R^{n x n} (the "rules"),  B_i in R^{(in/n) x (out/n)}

where (x) is the Kronecker product, so n must divide ``in`` and ``out``. ``B_i`` is a full
matrix (PHM: ``weight``, shape (n, in/n, out/n)) or a product ``L_i R_i`` of rank r (LPHM,
Compacter's: ``weight_left`` (n, in/n, r) and ``weight_right`` (n, r, out/n); at r = 1 this is
the paper's ``s_i t_i^T``). The rules are the layer's own (``rule``, (n, n, n)) or a slice of
one ``SharedRules`` tensor that many layers read, which then receives the gradients of all of
them.

The layer forms H once per call (about n * in * out products, where the product with the
tokens costs tokens * in * out) and applies it in one matrix product.

Initialisation, the authors' (``seq2seq/hypercomplex/layers.py`` of rabeehk/compacter): every
slice ``B_i`` (or ``L_i``, ``R_i``) Xavier-uniform with gain sqrt(2), the bias zero, the rules
normal with standard deviation ``rule_std`` (their per-layer rules 0.01, their shared rule
1e-4). So a PHM layer does not start at zero, and a PHM adapter not at the identity.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def kron_sum(rules: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``sum_i rules[i] (x) blocks[i]``: rules (n, n, n), blocks (n, p, q) -> (n p, n q)."""
    n, p, q = blocks.shape
    # entry (a p + u, b q + v) is sum_i A_i[a, b] B_i[u, v]: the Kronecker layout
    return torch.einsum('iab,iuv->aubv', rules, blocks).reshape(n * p, n * q)


class SharedRules(nn.Module):
    """Rule tensors shared by many PHM layers: ``rule`` of shape (groups, n, n, n), each
    layer reading one group (one group for a whole model, or one per stage)."""

    def __init__(self, groups: int, n: int, std: float):
        super().__init__()
        self.rule = nn.Parameter(torch.empty(groups, n, n, n))
        nn.init.normal_(self.rule, std=std)


class PHMLinear(nn.Module):
    """``y = x H + b`` with ``H = sum_i A_i (x) B_i`` (see the module docstring).

    Args:
        in_features, out_features: both divisible by ``n``.
        n: the number of Kronecker terms and the size of each rule.
        rank: None for full ``B_i``; r for ``B_i = L_i R_i`` of rank r.
        rule_std: standard deviation of the normal initialisation of a rule of its own.
        shared: ``(SharedRules, group)`` to read the rules from instead of owning them. The
            reference is kept out of the module tree, so the shared tensor has one name
            (where its owner registered it) and is counted and saved once.
    """

    def __init__(self, in_features: int, out_features: int, n: int,
                 rank: Optional[int] = None, rule_std: float = 0.01,
                 shared: Optional[Tuple[SharedRules, int]] = None):
        super().__init__()
        if in_features % n or out_features % n:
            raise ValueError(f'PHMLinear: n={n} must divide in_features={in_features} and '
                             f'out_features={out_features}')
        self.in_features, self.out_features, self.n, self.rank = in_features, out_features, n, rank
        self._shared = shared  # a plain tuple attribute: not a submodule
        if shared is None:
            self.rule = nn.Parameter(torch.empty(n, n, n))
            nn.init.normal_(self.rule, std=rule_std)
        p, q = in_features // n, out_features // n
        if rank is None:
            self.weight = nn.Parameter(torch.empty(n, p, q))
            factors = [self.weight]
        else:
            self.weight_left = nn.Parameter(torch.empty(n, p, rank))
            self.weight_right = nn.Parameter(torch.empty(n, rank, q))
            factors = [self.weight_left, self.weight_right]
        self.bias = nn.Parameter(torch.zeros(out_features))
        for factor in factors:
            for i in range(n):  # per slice, as the authors do
                nn.init.xavier_uniform_(factor[i], gain=math.sqrt(2))

    def rules(self) -> torch.Tensor:
        """The rules ``A`` this layer uses, (n, n, n)."""
        if self._shared is None:
            return self.rule
        holder, group = self._shared
        return holder.rule[group]

    def blocks(self) -> torch.Tensor:
        """The ``B_i``, (n, in/n, out/n)."""
        if self.rank is None:
            return self.weight
        return torch.bmm(self.weight_left, self.weight_right)

    def matrix(self) -> torch.Tensor:
        """``H``, (in, out)."""
        return kron_sum(self.rules(), self.blocks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.matrix().t(), self.bias)

    def extra_repr(self) -> str:
        rules = 'own' if self._shared is None else f'shared group {self._shared[1]}'
        rank = 'full' if self.rank is None else self.rank
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'n={self.n}, rank={rank}, rules={rules}')
