# Quickstart, BitFit: only the backbone's biases (and the heads) are trained.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='BitFit'))
