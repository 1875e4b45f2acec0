"""Polyhistor and Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv 2210.03265), one folder for
the two: hypernetwork-generated adapters for hierarchical vision transformers.

- ``hypernetworks.py``: the Decomposed HyperNetworks (one per stage; every adapter matrix
  generated as the product of two rank-r factors, ``DecomposedNetwork``) and the Decomposed
  Lite-HyperNetworks (one for the backbone at the first stage's widths,
  ``KroneckerNetwork``).
- ``scaling.py``: the Layer-wise Scaling Kernels that combine a block's generated weight
  sets into its adapter with Kronecker products (``ScalingKernels``).
- ``strategies.py``: the strategies ``Polyhistor`` and ``PolyhistorLite``, on the
  hypernetwork base of ``adapters/hyperformer.py`` (placement, task streams, weights
  generated once per forward).

Both follow the ``hyperlowrank++`` and ``hyperlowrank_kron`` variants of what looks like the
authors' Swin code (the code search index; its configuration files are not there, so which
variant is which paper row and the sizes are inferred): docs/strategies.md, "Hypernetwork
adapters".
"""
from .hypernetworks import DecomposedNetwork, KroneckerNetwork
from .scaling import ScalingKernels
from .strategies import Polyhistor, PolyhistorLite

__all__ = ['Polyhistor', 'PolyhistorLite', 'DecomposedNetwork', 'KroneckerNetwork',
           'ScalingKernels']
