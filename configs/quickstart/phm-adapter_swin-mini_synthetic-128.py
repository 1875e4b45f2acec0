# Quickstart, PHM adapters: after the attention and the MLP of every block, bottleneck
# width / 4, projections sum_i A_i (x) B_i with n = 4, full B_i and rules per layer; heads
# trained. Adds 47,968 parameters (sum over the 16 adapters of 2dk/4 + 2 x 4^3 + d + k);
# 1,506,144 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='PHMAdapter', reduction_factor=4, phm_dim=4))
