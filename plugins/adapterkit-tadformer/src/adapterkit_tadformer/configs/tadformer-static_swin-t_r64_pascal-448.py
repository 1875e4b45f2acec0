# TADFormer as its authors' released code (static per-task filters), rank 64
# (TADFormer_r64_Swin-T.yaml); 6,946,878 trainable parameters, decoders included.
_base_ = ['./tadformer-static_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(rank=64))
