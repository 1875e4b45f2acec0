# MTLoRA+, shared and task rank 16 (released mtlora_plus_tiny_448_r16_scale4);
# 4,298,810 trainable parameters.
_base_ = ['./mtlora-plus_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=16, task_rank=16))
