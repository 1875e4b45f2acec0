# Quickstart, decoder-only: the backbone is frozen and only the task heads train;
# 1,458,176 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='DecoderOnly'))
