# Quickstart, HyperFormer: one hypernetwork generates every task's adapters (after the
# attention and the MLP of every block, bottleneck = width / 8, generated post-LayerNorm)
# from task and layer embeddings of 16 (projector 32 -> 32 -> 16); every task its own stream.
# Adds 792,648 parameters; 2,250,824 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='HyperFormer', reduction_factor=8, task_dim=16, hidden_dim=32))
