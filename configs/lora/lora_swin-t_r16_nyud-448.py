# LoRA, rank 16, on qkv, proj, fc1 and fc2 of every Swin-T block, shared by the four NYUD-MT
# tasks (the rank of lora_swin-t_r16_pascal-448.py, the PASCAL comparison's LoRA row);
# 70,656 x 16 LoRA parameters, 3,091,173 trainable with the four heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head_nyud.py',
    '../_base_/datasets/nyud_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='LoRA',
    targets=r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])',
    rank=16))
