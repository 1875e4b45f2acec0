# Quickstart, VPT-deep: every block its own 10 prompt tokens, prepended to every attention
# window; heads trained. With 960 the sum of the 8 blocks' widths, adds 10 tokens x 960 =
# 9,600 parameters; 1,467,776 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='VPT', num_tokens=10, deep=True))
