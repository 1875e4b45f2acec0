# VPT-deep per task, Table 1's row (50 tokens, as the benchmark's counts show): every block
# its own 50 prompt tokens, prepended to every attention window, and every task its own.
# With 4,416 the sum of the 12 blocks' widths, adds 4 tasks x 50 x 4,416 = 883,200
# parameters; 2,829,824 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='VPT', num_tokens=50, deep=True)))
