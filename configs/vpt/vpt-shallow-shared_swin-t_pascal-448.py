# VPT-shallow, one set of prompts shared by the tasks: 50 prompt tokens of width 96 enter at
# the first block and are carried through the stages, prepended to every attention window.
# Adds 50 x 96 = 4,800 parameters; 1,951,424 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='VPT', num_tokens=50, deep=False))
