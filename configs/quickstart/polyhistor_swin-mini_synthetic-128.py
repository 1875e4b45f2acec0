# Quickstart, Polyhistor: Decomposed HyperNetworks generate every task's adapters (after the
# attention and the MLP of every block, bottleneck = width / 4) as rank-4 products from task
# and layer embeddings of 16 (projector 32 -> 32 -> 16); every task its own stream.
# Adds 185,408 parameters; 1,643,584 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Polyhistor', rank=4, task_dim=16, hidden_dim=32))
