# Low-rank adapters (the Compacter paper's baseline, Mahabadi et al., NeurIPS 2021) on Swin-T
# at 448, one copy shared by the four tasks: adapters after the attention and the MLP of every
# block (24), bottleneck = width / 4, each projection W_L W_R of rank 1. Adds 33,120
# parameters: per adapter of width d, (2r + 1)(d + d/4) with r = 1, summed over the 24
# adapters; 1,979,744 trainable with the four HRNet heads. Not mergeable (nonlinear). Table
# 1's row: configs/pertask/pertask-low-rank-adapter_swin-t_r1_pascal-448.py.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='LowRankAdapter', placement='houlsby', reduction_factor=4,
                          rank=1))
