# HyperFormer (Mahabadi et al., ACL 2021) on Swin-T at 448, Table 1's setting, as the
# `hyperformer` variant of the Polyhistor authors' Swin code (docs/strategies.md,
# "Hypernetwork adapters"): a hypernetwork in every block (its own projector 64 -> 128 -> 64
# on the task embedding, its own generator heads) generates that block's adapters for every
# task (after the attention and the MLP, bottleneck = width / 8, no generated LayerNorm);
# every task runs its own stream of the frozen backbone. Adds 70,934,224 parameters: T e +
# sum over the 12 blocks of [16,704 + 130 (2 d k + d + k)] with T = 4, e = 64, k = d / 8;
# 72,880,848 trainable with the four HRNet heads (1,946,624). The reduction factor and the
# LayerNorm are this project's choice (the authors' configuration is not public): of the
# natural sizes they come closest to the published 72.77M. Not mergeable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='HyperFormer', placement='houlsby', reduction_factor=8,
                          task_dim=64, hidden_dim=128, conditional_norm=False))
