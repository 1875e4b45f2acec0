# VPT-deep, one set of prompts shared by the tasks: every block its own 50 prompt tokens,
# prepended to every attention window. With 4,416 the sum of the 12 blocks' widths, adds
# 50 x 4,416 = 220,800 parameters; 2,167,424 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='VPT', num_tokens=50, deep=True))
