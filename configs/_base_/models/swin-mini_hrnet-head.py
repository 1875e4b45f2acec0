# A small Swin (timm's Swin V1 code, 2 blocks per stage, width 32, window 4) for CPU runs
# on 128 px synthetic scenes; the same model code and head as the paper's Swin-T setup.
tasks = dict(
    semseg=dict(loss_weight=1.0),
    human_parts=dict(loss_weight=2.0),
    sal=dict(loss_weight=5.0),
    normals=dict(loss_weight=10.0),
)

model = dict(
    type='MultiTaskModel',
    data_preprocessor=dict(
        type='MultiTaskDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375]),
    backbone=dict(
        type='SwinBackbone',
        arch='swin_tiny_patch4_window7_224',
        img_size=128,
        embed_dim=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.0,
        pretrained=None),
    tasks=tasks,
    head=dict(type='HRNetHead'),
    adapter=dict(type='Full'),
)
