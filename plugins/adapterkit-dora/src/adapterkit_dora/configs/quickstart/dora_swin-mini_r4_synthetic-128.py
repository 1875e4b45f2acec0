# Quickstart with DoRA on every linear layer of every Swin block, rank 4, on the embedded
# synthetic data; adds 15,360 x 4 + 8,640 = 70,080 parameters; 1,528,256 trainable. Run it
# as `adapterkit train dora::quickstart/dora_swin-mini_r4_synthetic-128.py`.
_base_ = ['adapterkit::quickstart/full_swin-mini_synthetic-128.py']

model = dict(
    adapter=dict(
        _delete_=True,
        type='DoRA',
        targets=[r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])'],
        rank=4,
        alpha=4.0))
