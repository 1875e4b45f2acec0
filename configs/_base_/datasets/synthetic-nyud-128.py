# Synthetic NYUD-MT rooms (written by `adapterkit synth data/synthetic-nyud --layout nyud
# --size 96x128`), in the exact NYUD-MT layout, read by the real NYUD-MT loader, with the NYUD
# protocol of nyud_mt-448.py at 128x128.
dataset_type = 'NYUDMTDataset'
data_root = 'data/synthetic-nyud'
img_size = (128, 128)

train_pipeline = [
    dict(type='MultiTaskRandomAffine', flip_prob=0.5, rotation=(0, 0),
         scale_choices=(1.0, 1.2, 1.5), size=img_size),
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

val_evaluator = dict(type='MultiTaskMetric')
test_evaluator = val_evaluator
