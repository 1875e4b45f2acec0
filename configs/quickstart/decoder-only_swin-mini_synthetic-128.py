# Quickstart, decoder-only: the backbone is frozen and only the task heads train.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='DecoderOnly'))
