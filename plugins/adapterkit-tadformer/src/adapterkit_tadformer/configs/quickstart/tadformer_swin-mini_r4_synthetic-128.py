# Quickstart with TADFormer (static per-task filters, as the authors' released code) on the
# mini Swin, rank 4, on the embedded synthetic data; 1,575,330 trainable. Run it as
# `adapterkit train tadformer::quickstart/tadformer_swin-mini_r4_synthetic-128.py`.
_base_ = ['adapterkit::quickstart/full_swin-mini_synthetic-128.py']

model = dict(
    adapter=dict(
        _delete_=True,
        type='TADFormer',
        rank=4,
        scale=4.0,
        dropout=0.05,
        filter='static'))
