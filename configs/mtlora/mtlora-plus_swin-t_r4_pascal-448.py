# MTLoRA+ on Swin-T at 448 for the four PASCAL-MT tasks: MTLoRA plus a bias-free shared LoRA
# on the PatchMerging reductions, which stay frozen. Shared and task rank 4, scale 4.0, LoRA
# dropout 0.05 (released mtlora_plus_tiny_448_r4_scale4); 2,573,114 trainable parameters.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='MTLoRA', plus=True, rank=4, task_rank=4, scale=4.0,
                          dropout=0.05))
