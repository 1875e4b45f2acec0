# VPT-shallow per task, Table 1's row (50 tokens, as the benchmark's counts show): 50 prompt
# tokens of width 96 enter at the first block and are carried through the stages, prepended
# to every attention window; every task its own. Adds 4 tasks x 50 x 96 = 19,200
# parameters; 1,965,824 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='VPT', num_tokens=50, deep=False)))
