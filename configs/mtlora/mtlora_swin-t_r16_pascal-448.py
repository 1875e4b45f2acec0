# MTLoRA (Agiza et al., CVPR 2024) on Swin-T at 448 for the four PASCAL-MT tasks: shared rank
# 16, task rank 4, scale 4.0, LoRA dropout 0.05 in every stage (the released
# mtlora_tiny_448_r16_scale4_pertask); 4,953,146 trainable parameters, decoders included.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='MTLoRA', rank=16, task_rank=4, scale=4.0, dropout=0.05))
