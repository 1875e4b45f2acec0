# MTLoRA on NYUD-MT with shared rank 64, task rank 4 (the released r64 setting);
# 8,358,687 trainable.
_base_ = ['./mtlora_swin-t_r16_nyud-448.py']
model = dict(adapter=dict(rank=64))
