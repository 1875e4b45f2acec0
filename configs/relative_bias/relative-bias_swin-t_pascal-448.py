# Relative-position-bias tuning per task, Table 1's row: only the 12 relative-position-bias
# tables of Swin-T (169 x heads each) train, every task its own copy, and the heads. Adds
# 4 tasks x 169 x 138 = 93,288 parameters; 2,039,912 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='DecoderOnly', trainable=['relative_position_bias'])))
