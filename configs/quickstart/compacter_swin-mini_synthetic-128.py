# Quickstart, Compacter: adapters after the attention and the MLP of every block, bottleneck
# width / 4, projections sum_i A_i (x) s_i t_i^T with n = 4 and one shared rule tensor; heads
# trained. Adds 7,264 parameters (3 x 1.25 x 2 x 960 + 4^3); 1,465,440 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Compacter', reduction_factor=4, phm_dim=4, rank=1))
