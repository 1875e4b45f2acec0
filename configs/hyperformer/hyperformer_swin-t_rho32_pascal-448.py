# HyperFormer with its authors' NLP reduction factor 32 (bottlenecks 3, 6, 12, 24 on
# Swin-T) and their generated post-adapter LayerNorm, everything else as
# hyperformer_swin-t_pascal-448.py. Adds 19,462,804 parameters (T e + sum over the blocks of
# [16,704 + 130 (2 d k + 3 d + k)], k = d // 32); 21,409,428 trainable with the four HRNet
# heads.
_base_ = ['./hyperformer_swin-t_pascal-448.py']
model = dict(adapter=dict(reduction_factor=32, conditional_norm=True))
