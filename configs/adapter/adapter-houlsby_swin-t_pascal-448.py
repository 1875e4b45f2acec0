# Bottleneck adapters in the Houlsby placement: after the attention and after the MLP of
# every Swin-T block, bottleneck width = block width // 16. Adds 548,520 parameters;
# 2,495,144 trainable with the four HRNet heads. Not mergeable (nonlinear).
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Adapter', placement='houlsby', reduction_factor=16))
