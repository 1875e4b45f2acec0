# NYUD-v2 multi-task (NYUD-MT, ATRC / InvPT packaging: 795 train, 654 val) with the MTLoRA
# reference code's NYUD protocol (its `--nyud` path, data/mtl_ds.py): horizontal flip, a scale
# of 1.0, 1.2 or 1.5 about the centre at the same size (no rotation; depth divided by the
# scale), then resize to 448x448; validation resizes to 448x448 and scores the resized labels.
# InvPT trains on random 448x576 crops with photometric distortion instead, and ATRC / MTI-Net
# at 480x640: numbers from those protocols are not comparable with these (docs/data.md).
dataset_type = 'NYUDMTDataset'
data_root = 'data/NYUD_MT'
img_size = (448, 448)

# Resampled on the GPU by the data preprocessor, as in pascal_mt-448.py.
train_pipeline = [
    dict(type='MultiTaskRandomAffine', flip_prob=0.5, rotation=(0, 0),
         scale_choices=(1.0, 1.2, 1.5), size=img_size, on_device=True),
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

# Δm needs single-task references measured under this protocol. No published single-task
# Swin-T numbers for it could be verified (docs/data.md, "NYUD-MT references"), so none are
# set: metrics are reported per task. Train your own with
#   adapterkit compare configs/compare/nyud_mt.py   (references = 'single-task')
# or set val_evaluator.references=dict(semseg=..., depth=..., normals=..., edge=...).
val_evaluator = dict(type='MultiTaskMetric')
test_evaluator = val_evaluator
