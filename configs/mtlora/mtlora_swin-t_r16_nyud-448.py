# MTLoRA (Agiza et al., CVPR 2024) on Swin-T at 448 for the four NYUD-MT tasks of the
# reference code's `--nyud` path (semseg, depth, normals, edge): shared rank 16, task rank 4,
# scale 4.0, LoRA dropout 0.05, as mtlora_swin-t_r16_pascal-448.py; 4,967,199 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head_nyud.py',
    '../_base_/datasets/nyud_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='MTLoRA', rank=16, task_rank=4, scale=4.0, dropout=0.05))
