# LoRA, rank 4, on qkv, proj, fc1 and fc2 of every Swin-T block (scale 1); the rest of the
# backbone stays frozen. Adds 70,656 x rank = 282,624 parameters; 2,229,248 trainable with
# the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='LoRA',
    targets=r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])',
    rank=4))
