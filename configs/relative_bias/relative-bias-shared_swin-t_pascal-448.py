# Relative-position-bias tuning, one copy shared by the tasks: only the 12 tables of Swin-T
# (169 x 138 = 23,322 parameters) and the heads train; 1,969,946 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='DecoderOnly', trainable=['relative_position_bias']))
