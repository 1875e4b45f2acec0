# MTLoRA+, shared rank 16, task rank 4 (released mtlora_plus_tiny_448_r16_scale4_pertask);
# 3,469,370 trainable parameters.
_base_ = ['./mtlora-plus_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=16, task_rank=4))
