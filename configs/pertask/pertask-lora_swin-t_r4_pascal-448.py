# Per-task LoRA: every task its own LoRA, rank 4 (scale 1), on qkv, proj, fc1 and fc2 of
# every Swin-T block, over one frozen backbone; the tasks run as streams stacked along the
# batch through the whole backbone. Adds 4 tasks x 70,656 x rank = 1,130,496 parameters;
# 3,077,120 trainable with the four HRNet heads.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(
    type='PerTask',
    strategy=dict(type='LoRA', rank=4)))
