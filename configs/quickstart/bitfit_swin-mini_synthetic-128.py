# Quickstart, BitFit: only the backbone's 11,520 biases (and the heads) are trained;
# 1,469,696 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='BitFit'))
