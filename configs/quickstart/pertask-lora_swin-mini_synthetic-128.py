# Quickstart, per-task LoRA: every task its own LoRA, rank 8, on qkv, proj, fc1 and fc2 of
# every block; heads trained. Adds 4 tasks x 15,360 x 8 = 491,520 parameters; 1,949,696
# trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='LoRA', rank=8)))
