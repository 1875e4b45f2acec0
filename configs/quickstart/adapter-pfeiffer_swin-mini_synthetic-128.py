# Quickstart, bottleneck adapters after the MLP of every block (Pfeiffer); adds 88,240
# parameters; 1,546,416 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Adapter', placement='pfeiffer', reduction_factor=4))
