# TADFormer as its authors' released code (static per-task filters), rank 32
# (TADFormer_r32_Swin-T.yaml); 4,670,526 trainable parameters, decoders included.
_base_ = ['./tadformer-static_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=32))
