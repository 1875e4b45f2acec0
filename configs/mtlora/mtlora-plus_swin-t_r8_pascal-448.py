# MTLoRA+, shared and task rank 8 (released mtlora_plus_tiny_448_r8_scale4);
# 3,148,346 trainable parameters.
_base_ = ['./mtlora-plus_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=8, task_rank=8))
