"""Building blocks that strategies and models both use: a leaf package (as timm's layers).

Nothing here imports another room of adapterkit (``models/``, ``adapters/``, ...); only the
foundation modules ``errors`` and ``fileio``, which import nothing of adapterkit themselves
(``tests/test_import_graph.py`` holds this). A strategy or model that needs a block uses
it from here; a block a single method owns stays in that method's module or folder.

- ``recompute.py``: ``recompute_in_backward``, keeping a recipe instead of a tensor for
  backward.
- ``projected_map.py``: ``ProjectedMap``, a map handed to a head before its last linear map.
- ``dropout.py``: ``LoRADropout``, the dropout of low-rank branches, fast on CPU (C kernel
  ``lora_dropout.c``); used by LoRA and MTLoRA.
- ``window_attention.py``: Swin's window attention stopped before ``proj``, for methods
  that project it per stream.
- ``task_lowrank.py``: ``task_down`` / ``task_up`` / ``task_add_up``, low-rank products
  with factors of their own per stream (T streams batched).
- ``native.py``: building and loading the C kernels (``*.c`` beside the modules that use
  them) with the system's compiler.
"""
from .dropout import LoRADropout
from .projected_map import ProjectedMap, materialize
from .recompute import recompute_in_backward
from .task_lowrank import task_down, task_up
from .window_attention import window_attention

__all__ = ['LoRADropout', 'ProjectedMap', 'materialize', 'recompute_in_backward', 'task_down',
           'task_up', 'window_attention']
