# Quickstart, Compacter++: Compacter after the MLP of every block only (bottleneck width / 4,
# n = 4, rank 1, one shared rule tensor); heads trained. Adds 3,664 parameters
# (3 x 1.25 x 960 + 4^3); 1,461,840 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='CompacterPlusPlus', reduction_factor=4, phm_dim=4, rank=1))
