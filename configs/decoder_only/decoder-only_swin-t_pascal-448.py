# MTL decoders only: the pretrained Swin-T stays frozen, the four HRNet heads train;
# 1,946,624 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='DecoderOnly'))
