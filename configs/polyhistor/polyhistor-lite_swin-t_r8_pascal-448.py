# Polyhistor-Lite (Liu et al., NeurIPS 2022) on Swin-T at 448, as the `hyperlowrank_kron`
# variant of the authors' Swin code (docs/strategies.md, "Hypernetwork adapters"): one
# Decomposed Lite-HyperNetwork (projector 192 -> 128 -> 64 on task, layer and position
# embeddings of 64) generates rank-8 weight sets at stage 0's widths (96 x 24), c of them
# for a block of width 96 c (c layer embeddings), which the block's Layer-wise Scaling
# Kernels (c x c x c, shared by the tasks) combine: W = sum_i K_i (x) W_i. Adapters after the
# attention and the MLP of every block, bottleneck = width / 4; every task runs its own
# stream of the frozen backbone. Adds 172,328 parameters: T e + 2 e + 33,088 +
# 65 (d_0 + k_0)(2 r + 1) + e sum_j c_j + sum over blocks with c > 1 of 2 (c^3 + c^2);
# 2,118,952 trainable with the four HRNet heads (1,946,624). Not mergeable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='PolyhistorLite', placement='houlsby', reduction_factor=4,
                          rank=8, task_dim=64, hidden_dim=128))
