# Quickstart, Polyhistor-Lite: rank-4 template kernels per task at stage 0's widths (32 x 8)
# from task embeddings of 16, scaled to every block by its Layer-wise Scaling Kernels; every
# task its own stream. Adds 14,208 parameters; 1,472,384 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='PolyhistorLite', rank=4, task_dim=16, hidden_dim=32))
