# MTL full fine-tuning (the paper's "MTL - Tuning Decoders + Full Backbone" row):
# Swin-T backbone and the four HRNet-style heads all trained; 29,464,442 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Full'))
