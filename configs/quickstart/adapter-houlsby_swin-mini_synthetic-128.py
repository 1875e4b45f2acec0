# Quickstart, bottleneck adapters after the attention and the MLP of every block (Houlsby);
# adds 176,480 parameters; 1,634,656 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='Adapter', placement='houlsby', reduction_factor=4))
