# Polyhistor (Liu et al., NeurIPS 2022) on Swin-T at 448, Table 1's setting, as
# reconstructed here (docs/strategies.md, "Hypernetwork adapters"): Decomposed
# HyperNetworks generate every task's adapters (after the attention and the MLP of every
# block, bottleneck = width / 4) as rank-8 products L R^T from a task and a layer embedding
# (64) through a shared projector (128 -> 128 -> 64) and generator heads per stage; every
# task runs its own stream of the frozen backbone. Adds 4,003,920 parameters: T e + 12 e +
# 24,896 + sum over stages of 130 (d + k)(2 r + 1) with T = 4, e = 64, r = 8; 5,950,544
# trainable with the four HRNet heads (1,946,624). Published: 8.96M (method part ~6.41M
# after the benchmark's larger decoders), not reproduced. Not mergeable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Polyhistor', placement='houlsby', reduction_factor=4, rank=8,
                          task_dim=64, hidden_dim=128))
