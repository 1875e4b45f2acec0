# BitFit per task, as the benchmark of Table 1 counted it (2.85M): every task its own copy of
# the backbone's 51,456 biases and of its 23,322 relative-position-bias entries. Adds 4
# tasks x 74,778 = 299,112 parameters; 2,245,736 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='BitFit', trainable=['relative_position_bias'])))
