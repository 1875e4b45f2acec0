# Quickstart, Polyhistor-Lite: one hypernetwork generates rank-4 weight sets per task at
# stage 0's widths (32 x 8) from task, layer and position embeddings of 16, which every
# block's Layer-wise Scaling Kernels combine (Kronecker products); every task its own
# stream. Adds 11,496 parameters; 1,469,672 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='PolyhistorLite', rank=4, task_dim=16, hidden_dim=32))
