# TADFormer with the paper's Dynamic Task Filter, rank 64; 7,379,262 trainable parameters,
# decoders included (the paper's 7.38M).
_base_ = ['./tadformer-dynamic_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=64))
