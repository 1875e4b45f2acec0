# Quickstart, Polyhistor: Decomposed HyperNetworks, one per stage, generate every task's
# adapters (after the attention and the MLP of every block, bottleneck = width / 4) as
# rank-4 products from task, layer and position embeddings of 16 (projector 48 -> 32 -> 16);
# every task its own stream. Adds 100,632 parameters; 1,558,808 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Polyhistor', rank=4, task_dim=16, hidden_dim=32))
