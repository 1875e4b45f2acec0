# MTLoRA+ on NYUD-MT: MTLoRA plus a bias-free shared LoRA on the PatchMerging reductions;
# shared and task rank 16, scale 4.0, LoRA dropout 0.05 (as mtlora-plus_swin-t_r16_pascal-448);
# 4,312,863 trainable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head_nyud.py',
    '../_base_/datasets/nyud_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='MTLoRA', plus=True, rank=16, task_rank=16, scale=4.0,
                          dropout=0.05))
