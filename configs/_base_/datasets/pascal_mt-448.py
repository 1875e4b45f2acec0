# PASCAL-Context multi-task (PASCAL-MT) with the MTLoRA paper's protocol at 448x448.
dataset_type = 'PascalMTDataset'
data_root = 'data/PASCAL_MT'
img_size = (448, 448)

# Flip (p 0.5), rotation U(-20, 20) degrees and scale U(0.75, 1.25) about the centre, resize:
# the paper's MultiTaskRandomFlip -> MultiTaskRandomScaleRotate -> MultiTaskResize composed into
# one resampling per map (same draws, equal within interpolation error), done by the data
# preprocessor on the GPU for the whole batch (on_device=True): the workers only decode files
# (docs/performance.md). Set on_device=False to resample in the workers with OpenCV.
train_pipeline = [
    dict(type='MultiTaskRandomAffine', flip_prob=0.5, rotation=(-20, 20), scale=(0.75, 1.25),
         size=img_size, on_device=True),
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
