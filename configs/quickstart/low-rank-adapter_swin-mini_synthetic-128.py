# Quickstart, low-rank adapters: after the attention and the MLP of every block, bottleneck
# width / 4, each projection of rank 1; heads trained. Adds 7,200 parameters
# (3 x 1.25 x 2 x 960); 1,465,376 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='LowRankAdapter', reduction_factor=4, rank=1))
