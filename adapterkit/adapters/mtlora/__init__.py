"""MTLoRA and MTLoRA+ (Agiza, Neseem, Reda, CVPR 2024), one folder for the method's parts.

- ``mtlora.py``: the layer (``MTLoRALinear``), the Swin blocks that carry the task streams
  (``MTLoRABlock``, ``MTLoRASharedBlock``, ``MTLoRAMlp``) and the strategy ``MTLoRA``
  (registered in ``ADAPTERS`` on import).
- ``ops.py``: ``task_hidden_down``, the task MLPs from fc1's low-rank term to fc2's without
  their hidden layer, and its C kernel ``task_mlp.c`` (the general task products,
  ``task_down`` and ``task_up``, are in ``adapterkit/layers/task_lowrank.py``).
- ``convert.py``: released checkpoints of the reference code (scale-lab/MTLoRA) in
  adapterkit's key layout; ``MTLoRA.convert_state_dict`` hands it to the model on load.
"""
from .convert import convert_checkpoint, convert_state_dict, is_reference_state_dict
from .mtlora import MTLoRA, MTLoRABlock, MTLoRALinear, MTLoRAMlp, MTLoRASharedBlock

__all__ = ['MTLoRA', 'MTLoRALinear', 'MTLoRABlock', 'MTLoRASharedBlock', 'MTLoRAMlp',
           'convert_checkpoint', 'convert_state_dict', 'is_reference_state_dict']
