# The paper's model setup (tasks, loss weights, HRNet heads) on a small Swin for CPU runs on
# 128 px synthetic scenes: timm's Swin V1 code with 2 blocks per stage, width 32, window 4.
_base_ = ['./swin-t_hrnet-head.py']

model = dict(
    backbone=dict(
        img_size=128,
        embed_dim=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.0,
        pretrained=None))
