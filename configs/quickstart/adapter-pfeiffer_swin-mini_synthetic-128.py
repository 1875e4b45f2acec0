# Quickstart, bottleneck adapters after the MLP of every block (Pfeiffer).
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Adapter', placement='pfeiffer', reduction_factor=4))
