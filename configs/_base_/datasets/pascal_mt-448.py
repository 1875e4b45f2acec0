# PASCAL-Context multi-task (PASCAL-MT) with the MTLoRA paper's protocol at 448x448.
dataset_type = 'PascalMTDataset'
data_root = 'data/PASCAL_MT'
img_size = (448, 448)

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

# The datasets' and the evaluator's `tasks` are filled in from `model.tasks` when left out.
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=val_pipeline))
test_dataloader = val_dataloader

# Single-task full fine-tuning references of the paper (Swin-T, PASCAL val) for Δm.
val_evaluator = dict(
    type='MultiTaskMetric',
    references=dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97))
test_evaluator = val_evaluator
