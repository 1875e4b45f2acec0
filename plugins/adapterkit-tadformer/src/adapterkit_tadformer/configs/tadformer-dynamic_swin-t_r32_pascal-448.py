# TADFormer with the paper's Dynamic Task Filter, rank 32; 4,776,126 trainable parameters,
# decoders included (the paper's 4.78M).
_base_ = ['./tadformer-dynamic_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=32))
