# MTL decoders only on NYUD-MT: the pretrained Swin-T stays frozen, the four heads train
# (1,960,677).
_base_ = [
    '../_base_/models/swin-t_hrnet-head_nyud.py',
    '../_base_/datasets/nyud_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='DecoderOnly'))
