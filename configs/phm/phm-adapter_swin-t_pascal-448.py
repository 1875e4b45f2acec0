# PHM adapters (Mahabadi et al., NeurIPS 2021) on Swin-T at 448, one copy shared by the four
# tasks: adapters after the attention and the MLP of every block (24), bottleneck = width / 4,
# projections sum_i A_i (x) B_i with n = 4, full B_i and rules A of their own in every PHM
# layer. Adds 553,248 parameters: per adapter of width d and bottleneck k = d/4,
# 2dk/n + 2n^3 + d + k, summed over the 24 adapters; 2,499,872 trainable with the four HRNet
# heads. Not mergeable (nonlinear). No Table-1 row; the per-task variant is
# configs/pertask/pertask-phm-adapter_swin-t_pascal-448.py.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='PHMAdapter', placement='houlsby', reduction_factor=4,
                          phm_dim=4, share_rule='layer'))
