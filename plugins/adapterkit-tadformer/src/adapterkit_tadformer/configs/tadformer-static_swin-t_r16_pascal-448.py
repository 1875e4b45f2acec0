# TADFormer (Baek et al., CVPR 2025) on Swin-T at 448 for the four PASCAL-MT tasks, as its
# authors' released code (Min100KM/TADFormer@1f53b9f, TADFormer_r16_Swin-T.yaml, with the
# ABLATION flags True): static per-task filters, rank 16, scale 4.0, LoRA dropout 0.05, gated
# stage skip; 3,532,350 trainable parameters, decoders included (= 71,136 r + 2,394,174).
_base_ = [
    'adapterkit::_base_/models/swin-t_hrnet-head.py',
    'adapterkit::_base_/datasets/pascal_mt-448.py',
    'adapterkit::_base_/schedules/mtlora_300e.py',
]
model = dict(adapter=dict(type='TADFormer', rank=16, scale=4.0, dropout=0.05, filter='static',
                          skip='gated'))
