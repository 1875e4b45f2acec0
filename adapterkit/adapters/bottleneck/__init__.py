"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), one folder for the family.

- ``adapter.py``: the bottleneck module (``BottleneckAdapter``) and the strategy ``Adapter``
  (Houlsby and Pfeiffer placements, widths per stage, the ``prepare`` and
  ``adapter_module`` hooks of the presets).
- ``phm.py``: the PHM layer (``PHMLinear``: a weight that is a sum of Kronecker products)
  and the rule tensors several of them share (``SharedRules``).
- ``compacter.py``: the presets with PHM projections, ``PHMAdapter``, ``Compacter`` and
  ``CompacterPlusPlus`` (Mahabadi et al., 2021).
- ``low_rank.py``: ``LowRankLinear`` and the preset ``LowRankAdapter`` (the Compacter
  paper's low-rank baseline).

Every strategy here is registered in ``ADAPTERS`` on import. A preset is ``Adapter`` with
other defaults, its own child name (and so its own parameter prefix) and its own
``adapter_module``: the placement, widths and training stay in ``Adapter``.
"""
from .adapter import Adapter, BottleneckAdapter
from .compacter import Compacter, CompacterPlusPlus, PHMAdapter
from .low_rank import LowRankAdapter, LowRankLinear
from .phm import PHMLinear, SharedRules

__all__ = ['Adapter', 'BottleneckAdapter', 'PHMAdapter', 'Compacter', 'CompacterPlusPlus',
           'PHMLinear', 'SharedRules', 'LowRankAdapter', 'LowRankLinear']
