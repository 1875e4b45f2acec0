# MTL full fine-tuning on NYUD-MT: Swin-T and the four HRNet-style heads all trained;
# 29,478,495 trainable (the semseg head predicts 40 classes).
_base_ = [
    '../_base_/models/swin-t_hrnet-head_nyud.py',
    '../_base_/datasets/nyud_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Full'))
