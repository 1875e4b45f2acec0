"""Polyhistor and Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv 2210.03265), one folder for
the two: hypernetwork-generated adapters for hierarchical vision transformers.

- ``hypernetworks.py``: the Decomposed HyperNetwork (every adapter matrix generated as the
  product of two rank-r factors, ``DecomposedNetwork``) and its Lite variant, which
  generates stage-0-sized template kernels from the task alone (``TemplateNetwork``).
- ``scaling.py``: the Layer-wise Scaling Kernels that scale a template up to each block's
  width with a Kronecker product (``ScalingKernels``).
- ``strategies.py``: the strategies ``Polyhistor`` and ``PolyhistorLite``, on the
  hypernetwork base of ``adapters/hyperformer.py`` (placement, task streams, weights
  generated once per forward).

The paper's Sections 3-5 could not be read here and no code was released with it:
both are reconstructions from its abstract, its Figure 2 and HyperFormer's code, with every
open choice written down in docs/strategies.md ("Hypernetwork adapters").
"""
from .hypernetworks import DecomposedNetwork, TemplateNetwork
from .scaling import ScalingKernels
from .strategies import Polyhistor, PolyhistorLite

__all__ = ['Polyhistor', 'PolyhistorLite', 'DecomposedNetwork', 'TemplateNetwork',
           'ScalingKernels']
