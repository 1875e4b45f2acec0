# Quickstart, MTLoRA+: MTLoRA plus LoRA on the frozen PatchMerging reductions;
# 1,625,886 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='MTLoRA', plus=True, rank=4, task_rank=4, scale=4.0,
                          dropout=0.05))
