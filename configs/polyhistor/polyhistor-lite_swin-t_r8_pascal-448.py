# Polyhistor-Lite (Liu et al., NeurIPS 2022) on Swin-T at 448, as reconstructed here
# (docs/strategies.md, "Hypernetwork adapters"): Decomposed Lite-HyperNetworks
# generate per task one rank-8 template kernel per adapter position at stage 0's widths
# (96 x 24) from the task embedding alone; each block's Layer-wise Scaling Kernels (c x c,
# c = 1, 2, 4, 8, shared by the tasks) scale it to the block's width, S (x) T. Adapters
# after the attention and the MLP of every block, bottleneck = width / 4; every task runs
# its own stream of the frozen backbone. Adds 283,280 parameters: T e + 16,704 +
# 130 (d_0 + k_0)(2 r + 1) + sum over blocks of (4 c^2 + 4 c); 2,229,904 trainable with the
# four HRNet heads (1,946,624). Not mergeable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='PolyhistorLite', placement='houlsby', reduction_factor=4,
                          rank=8, task_dim=64, hidden_dim=128))
