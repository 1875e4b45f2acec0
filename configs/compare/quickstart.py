# The quickstart comparison (`make demo`): pretraining, single-task references and ten
# methods under one identical pipeline on the embedded synthetic data, on 2 CPU cores in
# a few minutes. The numbers show the machinery working, not any method's merit.
#
# Every run is the quickstart config (mini Swin, HRNet heads, 4 tasks) at 64 px: the
# shared `options` set the image size of the backbone and of the resize transforms
# (list indices address the pipelines of configs/_base_/datasets/synthetic-128.py).
_size = 64
_resize = (_size, _size)

base = '../quickstart/full_swin-mini_synthetic-128.py'

# Each member contributes only its model.adapter (its config must equal `base` otherwise).
members = dict(
    full='../quickstart/full_swin-mini_synthetic-128.py',
    decoder_only='../quickstart/decoder-only_swin-mini_synthetic-128.py',
    bitfit='../quickstart/bitfit_swin-mini_synthetic-128.py',
    lora='../quickstart/lora_swin-mini_synthetic-128.py',
    adapter='../quickstart/adapter-houlsby_swin-mini_synthetic-128.py',
    compacter='../quickstart/compacter_swin-mini_synthetic-128.py',
    vpt_deep='../quickstart/vpt-deep_swin-mini_synthetic-128.py',
    pertask_lora='../quickstart/pertask-lora_swin-mini_synthetic-128.py',
    mtlora='../quickstart/mtlora_swin-mini_synthetic-128.py',
    mtlora_plus='../quickstart/mtlora-plus_swin-mini_synthetic-128.py',
)

seeds = [0]
references = 'single-task'  # Δm against single-task full fine-tuning on the same data

data = dict(root='data/compare/quickstart',
            synthesize=dict(num_train=160, num_val=40, size=_size, seed=0))

options = {
    'model.backbone.img_size': _size,
    'train_dataloader.dataset.pipeline.2.size': _resize,  # MultiTaskResize
    'val_dataloader.dataset.pipeline.0.size': _resize,
    'test_dataloader.dataset.pipeline.0.size': _resize,
    'val_dataloader.batch_size': 20,
    'test_dataloader.batch_size': 20,
    # fine-tuning from the pretrained backbone: 120 iterations of batch 8 (6 epochs), 12 of
    # warm-up, then cosine decay; a checkpoint every 40 so that an interrupted run resumes
    'train_cfg.max_iters': 120,
    'train_cfg.val_interval': 120,
    'param_scheduler': [
        dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=12),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=12, end=120,
             T_max=108),
    ],
    'default_hooks.checkpoint.interval': 40,
}

# Parameter-efficient methods need a pretrained backbone and none can be downloaded: a
# pretraining stage on a disjoint scene distribution (other classes' looks, backgrounds,
# object counts and seed) stands in for ImageNet weights.
pretrain = dict(
    data=dict(root='data/compare/quickstart-pretrain',
              synthesize=dict(num_train=160, num_val=20, size=_size, seed=1,
                              style='pretrain')),
    # all four tasks, full fine-tuning, 200 iterations (10 epochs)
    options={
        'train_cfg.max_iters': 200,
        'train_cfg.val_interval': 200,
        'param_scheduler': [
            dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
            dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=20, end=200,
                 T_max=180),
        ],
    },
)
