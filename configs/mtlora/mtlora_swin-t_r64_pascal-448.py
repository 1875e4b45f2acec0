# MTLoRA, shared rank 64, task rank 4 (released mtlora_tiny_448_r64_scale4_pertask);
# 8,344,634 trainable parameters.
_base_ = ['./mtlora_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=64))
