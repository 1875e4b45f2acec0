# HyperFormer (Mahabadi et al., ACL 2021) on Swin-T at 448, Table 1's setting: one shared
# hypernetwork generates every task's adapters (after the attention and the MLP of every
# block, bottleneck = width / 4, with the generated post-adapter LayerNorm) from a task and
# a layer embedding (64), through a shared projector (128 -> 128 -> 64) and generator heads
# per stage; every task runs its own stream of the frozen backbone. Adds 51,552,720
# parameters: T e + 12 e + 24,896 + sum over stages of 130 (2 d k + 3 d + k) with T = 4,
# e = 64; 53,499,344 trainable with the four HRNet heads (1,946,624). Not mergeable. The
# published 72.77M is not reproduced (docs/strategies.md, "Hypernetwork adapters").
_base_ = [
    '../_base_/models/swin-t_hrnet-head.py',
    '../_base_/datasets/pascal_mt-448.py',
    '../_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='HyperFormer', placement='houlsby', reduction_factor=4,
                          task_dim=64, hidden_dim=128, conditional_norm=True))
