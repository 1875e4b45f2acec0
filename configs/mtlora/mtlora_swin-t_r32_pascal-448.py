# MTLoRA, shared rank 32, task rank 4 (released mtlora_tiny_448_r32_scale4_pertask);
# 6,083,642 trainable parameters.
_base_ = ['./mtlora_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=32))
