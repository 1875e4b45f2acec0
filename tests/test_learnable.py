"""The synthetic data is learnable: a small model rises well above its untrained metrics
within 150 CPU iterations, through the real Runner and loader."""
import os.path as osp

import torch
from mmengine.runner import Runner

import adapterkit
from adapterkit.datasets.synthetic import synthesize

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


def _config(root, work_dir, max_iters):
    cfg = adapterkit.load_config(QUICKSTART, {
        'model.tasks': {'_delete_': True, 'semseg': {}, 'normals': {'loss_weight': 10.0}},
        'model.backbone.img_size': 64,
        'train_cfg.max_iters': max_iters, 'train_cfg.val_interval': max(max_iters, 1),
        'param_scheduler.0.end': 20,
        'param_scheduler.1': dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
                                  begin=20, end=150, T_max=130),
    })
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = root
        for step in cfg[loader].dataset.pipeline:
            if step['type'] == 'MultiTaskResize':
                step['size'] = (64, 64)
    cfg.work_dir = work_dir
    cfg.experiment_name = osp.basename(work_dir)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 6)
    return cfg


def test_quickstart_model_learns_the_synthetic_scenes(tmp_path):
    root = synthesize(str(tmp_path / 'data'), num_train=48, num_val=16, size=64, seed=1)
    torch.manual_seed(0)
    untrained = Runner.from_cfg(_config(root, str(tmp_path / 'untrained'), 0)).val()
    trained_runner = Runner.from_cfg(_config(root, str(tmp_path / 'trained'), 150))
    trained_runner.train()
    trained = trained_runner.val()
    assert trained['semseg/mIoU'] > untrained['semseg/mIoU'] + 20, (untrained, trained)
    assert trained['normals/mean'] < untrained['normals/mean'] - 10, (untrained, trained)
