# MTLoRA+, shared rank 32, task rank 4 (released mtlora_plus_tiny_448_r32_scale4_pertask);
# 4,664,378 trainable parameters.
_base_ = ['./mtlora-plus_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=32, task_rank=4))
