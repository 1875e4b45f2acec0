# HyperFormer with its authors' NLP reduction factor 32 (bottlenecks 3, 6, 12, 24 on
# Swin-T), everything else as hyperformer_swin-t_pascal-448.py. Adds 6,958,170 parameters
# (the same formula with k = d / 32); 8,904,794 trainable with the four HRNet heads.
_base_ = ['./hyperformer_swin-t_pascal-448.py']
model = dict(adapter=dict(reduction_factor=32))
