# The embedded synthetic scenes (written by `adapterkit synth data/synthetic --size 128`),
# in the exact PASCAL-MT layout, read by the real PASCAL-MT loader.
dataset_type = 'PascalMTDataset'
data_root = 'data/synthetic'
img_size = (128, 128)

train_pipeline = [
    dict(type='MultiTaskRandomFlip', prob=0.5),
    dict(type='MultiTaskRandomScaleRotate', rotation=(-20, 20), scale=(0.75, 1.25)),
    dict(type='MultiTaskResize', size=img_size),
    dict(type='PackMultiTaskInputs'),
]
val_pipeline = [
    dict(type='MultiTaskResize', size=img_size),
    dict(type='PackMultiTaskInputs'),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=val_pipeline))
test_dataloader = val_dataloader

# No paper numbers on synthetic data: Δm needs references measured on the same data
# (single-task runs; see `adapterkit compare`). Metrics are reported per task.
val_evaluator = dict(type='MultiTaskMetric')
test_evaluator = val_evaluator
