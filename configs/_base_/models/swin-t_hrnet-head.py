# Swin-T (ImageNet-1k 224 weights, window 7) at 448 with the paper's HRNet-style head per task.
# The four PASCAL tasks of the MTLoRA paper with its loss weights.
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
        img_size=448,
        drop_path_rate=0.2,
        # A local file, in Microsoft's or timm's layout (no downloads).
        pretrained='checkpoints/swin_tiny_patch4_window7_224.pth'),
    tasks=tasks,
    head=dict(type='HRNetHead'),
    adapter=dict(type='Full'),
)
