# Polyhistor (Liu et al., NeurIPS 2022) on Swin-T at 448, Table 1's setting, as the
# `hyperlowrank++` variant of the authors' Swin code (docs/strategies.md, "Hypernetwork
# adapters"): Decomposed HyperNetworks, one per stage (projector 192 -> 128 -> 64 on task,
# layer and position embeddings of 64), generate every task's adapters (after the attention
# and the MLP of every block, bottleneck = width / 4) as rank-8 products A B; every task
# runs its own stream of the frozen backbone. Adds 2,122,888 parameters: T e + 12 e + sum
# over stages of [2 e + 33,088 + 65 (d + k)(2 r + 1)] with T = 4, e = 64, r = 8; 4,069,512
# trainable with the four HRNet heads (1,946,624). Published: 8.96M; the authors' sizes are
# not public, so not reproduced. Not mergeable.
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='Polyhistor', placement='houlsby', reduction_factor=4, rank=8,
                          task_dim=64, hidden_dim=128))
