# Compacter (Mahabadi et al., NeurIPS 2021) on Swin-T at 448, one copy shared by the four
# tasks: adapters after the attention and the MLP of every block (24), bottleneck = width / 4
# (24, 48, 96, 192), projections sum_i A_i (x) s_i t_i^T with n = 4 and one rule tensor A
# (4 x 4 x 4) for the whole backbone. Adds 33,184 parameters: per adapter of width d,
# (2r + 1)(d + d/4) with r = 1, summed over the 24 adapters, + n^3 = 64; 1,979,808 trainable
# with the four HRNet heads (1,946,624). Not mergeable (nonlinear). Table 1's row trained one
# Compacter per task: configs/pertask/pertask-compacter_swin-t_pascal-448.py.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Compacter', placement='houlsby', reduction_factor=4,
                          phm_dim=4, rank=1, share_rule='model'))
