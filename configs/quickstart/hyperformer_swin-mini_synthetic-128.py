# Quickstart, HyperFormer: a hypernetwork in every block generates that block's adapters
# for every task (after the attention and the MLP, bottleneck = width / 8, generated
# post-LayerNorm) from task embeddings of 16 (projector 16 -> 32 -> 16); every task its own
# stream. Adds 1,590,576 parameters; 3,048,752 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='HyperFormer', reduction_factor=8, task_dim=16, hidden_dim=32))
