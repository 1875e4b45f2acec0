"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), one folder for the family.

- ``adapter.py``: the bottleneck module (``BottleneckAdapter``) and the strategy ``Adapter``
  (Houlsby and Pfeiffer placements, widths per stage), registered in ``ADAPTERS`` on import.

The variants of the family are presets of ``Adapter`` and join here as modules of their
own: a projection layer (PHM: ``phm.py``) and the strategies that put it in the bottleneck
with other defaults (Compacter, Compacter++, low-rank adapters), each overriding
``Adapter.adapter_module``, the one place the bottleneck module is built.
"""
from .adapter import Adapter, BottleneckAdapter

__all__ = ['Adapter', 'BottleneckAdapter']
