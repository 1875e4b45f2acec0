# Quickstart, LoRA: rank 8 on qkv, proj, fc1 and fc2 of every block; heads trained. Adds
# 15,360 x 8 = 122,880 parameters; 1,581,056 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(
    type='LoRA',
    targets=r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])',
    rank=8))
