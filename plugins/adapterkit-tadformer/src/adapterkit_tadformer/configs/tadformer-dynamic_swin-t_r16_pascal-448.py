# TADFormer (Baek et al., CVPR 2025) with the paper's Dynamic Task Filter (the authors'
# DTF class, which their released code leaves unused), rank 16, on Swin-T at 448 for the
# four PASCAL-MT tasks; 3,557,502 trainable parameters, decoders included (= 108 r^2 +
# 70,980 r + 2,394,174; the paper's 3.56M).
_base_ = ['./tadformer-static_swin-t_r16_pascal-448.py']
model = dict(adapter=dict(filter='dynamic'))
