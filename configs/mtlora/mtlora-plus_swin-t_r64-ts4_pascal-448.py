# MTLoRA+, shared rank 64, task rank 4 (released mtlora_plus_tiny_448_r64_scale4_pertask);
# 7,054,394 trainable parameters.
_base_ = ['./mtlora-plus_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=64, task_rank=4))
