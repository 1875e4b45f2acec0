# BitFit: only the 51,456 bias parameters of the Swin-T backbone are trained (plus the
# heads); 1,998,080 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='BitFit'))
