"""The hooks of engine/hooks.py in real mmengine Runners on a tiny model and real data:
checkpoints that keep what they must, training that stops when it diverges, metrics files
that are valid JSON. (Kill -9 during a checkpoint write: tests/test_export.py.)"""
import json
import math
import os
import os.path as osp
import re
import uuid

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from adapterkit import load_config
from adapterkit.compat import load_checkpoint_file
from adapterkit.datasets.synthetic import synthesize
from adapterkit.engine.hooks import SaveMetricsHook
from adapterkit.errors import DivergedError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return synthesize(str(tmp_path_factory.mktemp('data')), num_train=4, num_val=2, size=64,
                      seed=2)


def runner(root, work_dir, max_iters, **options):
    """A Runner of the quickstart config on a one-block-per-stage Swin at 64 px, batch 2,
    semseg and normals, a checkpoint every iteration (max_keep_ckpts=1)."""
    cfg = load_config(QUICKSTART, {
        'model.tasks': {'_delete_': True, 'semseg': {}, 'normals': {}},
        'model.backbone.img_size': 64, 'model.backbone.embed_dim': 16,
        'model.backbone.depths': (1, 1, 1, 1), 'model.backbone.num_heads': (1, 2, 2, 4),
        'train_dataloader.batch_size': 2, 'val_dataloader.batch_size': 2,
        'train_cfg.max_iters': max_iters, 'train_cfg.val_interval': max_iters,
        'default_hooks.checkpoint.interval': 1, 'default_hooks.checkpoint.max_keep_ckpts': 1,
        'log_level': 'WARNING', **options})
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = root
        for step in cfg[loader].dataset.pipeline:
            if step['type'] == 'MultiTaskResize':
                step['size'] = (64, 64)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'hooks-{uuid.uuid4().hex[:8]}'
    return Runner.from_cfg(cfg)


class Poison(Hook):
    """A fault: turn one weight of the backbone to nan after iteration ``at``."""

    priority = 'HIGHEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.backbone.patch_embed.proj.weight[0, 0, 0, 0] = float('nan')


def files(work_dir):
    return sorted(name for name in os.listdir(work_dir) if not osp.isdir(work_dir / name))


def test_non_finite_weights_are_never_saved_and_the_kept_checkpoint_stays(root, tmp_path):
    run = runner(root, tmp_path, max_iters=3)
    run.register_hook(Poison(at=2))
    with pytest.raises(DivergedError, match=r'^refusing to save iter_2\.pth: weight '
                       r'backbone\.patch_embed\.proj\.weight is not finite; .*/iter_1\.pth is '
                       r'kept\. Training diverged: lower the learning rate'):
        run.train()
    # max_keep_ckpts=1: mmengine would have deleted iter_1.pth before writing iter_2.pth
    assert [f for f in files(tmp_path) if f.endswith('.pth') or f == 'last_checkpoint'] == [
        'iter_1.pth', 'last_checkpoint']
    state = load_checkpoint_file(str(tmp_path / 'iter_1.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_nan_loss_stops_training_naming_the_iteration_and_the_tasks(root, tmp_path):
    run = runner(root, tmp_path, max_iters=4, **{'default_hooks.checkpoint.interval': 100})
    run.register_hook(Poison(at=2))  # the forward of iteration 3 reads the nan weight
    with pytest.raises(DivergedError, match=r'^loss_semseg is nan, loss_normals is nan at '
                       r'iteration 3: training stopped, nothing of this iteration was saved; '
                       r'lower the learning rate \(optim_wrapper\.optimizer\.lr\)$'):
        run.train()
    assert not [f for f in files(tmp_path) if f.endswith('.pth')]


def test_every_option_of_mmengines_hook_still_works_best_checkpoints_included(root, tmp_path):
    run = runner(root, tmp_path, max_iters=3, **{
        'train_cfg.val_interval': 1, 'default_hooks.checkpoint.save_best': 'normals/mean',
        'default_hooks.checkpoint.rule': 'less'})
    run.train()
    names = files(tmp_path)
    best = [f for f in names if f.startswith('best_')]
    assert [f for f in names if f.startswith('iter_')] == ['iter_3.pth'] and len(best) == 1
    assert not [f for f in names if f.endswith('.tmp')]
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_3.pth')
    saved = load_checkpoint_file(str(tmp_path / 'iter_3.pth'))
    hub = saved['message_hub']['runtime_info']
    assert hub['keep_ckpt_ids'] == [3] and hub['best_ckpt'] == str(tmp_path / best[0])


class Interrupt(Hook):
    """A fault: the process stops as the final validation begins (its checkpoint saved)."""

    def before_val_epoch(self, runner):
        raise KeyboardInterrupt


def test_a_run_stopped_in_its_final_validation_validates_when_resumed(root, tmp_path):
    run = runner(root, tmp_path, max_iters=2)
    run.register_hook(Interrupt())
    with pytest.raises(KeyboardInterrupt):
        run.train()
    assert 'iter_2.pth' in files(tmp_path) and 'metrics.json' not in files(tmp_path)
    resumed = runner(root, tmp_path, max_iters=2, resume=True)
    resumed.train()  # nothing left to train; mmengine's loop would not validate either
    with open(tmp_path / 'metrics.json') as f:
        record = json.load(f)
    assert (record['split'], record['iter']) == ('val', 2) and 'semseg/mIoU' in record['metrics']


def test_metrics_without_a_value_are_written_as_null_in_valid_json(tiny_model, tmp_path):
    run = Runner(model=tiny_model(), work_dir=str(tmp_path),
                 experiment_name=f'hooks-{uuid.uuid4().hex[:8]}')
    SaveMetricsHook().after_test_epoch(run, {'semseg/mIoU': 12.5, 'normals/mean': math.nan})
    with open(tmp_path / 'metrics.json') as f:
        record = json.loads(f.read(), parse_constant=lambda name: pytest.fail(name))
    assert record == dict(split='test', iter=None, epoch=None,
                          metrics={'semseg/mIoU': 12.5, 'normals/mean': None})


def test_a_huge_learning_rate_stops_the_quickstart_at_once_saving_nothing(
        cli, data_options, synth_root, tmp_path):
    proc = cli('train', QUICKSTART, '--work-dir', str(tmp_path), *data_options(synth_root, 6),
               'optim_wrapper.optimizer.lr=1e6', check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r'adapterkit train: error: the gradient norm is nan \(largest task loss '
                        r'loss_\w+ = [\d.e+]+\) at iteration 2: training stopped, nothing of '
                        r'this iteration was saved; lower the learning rate '
                        r'\(optim_wrapper\.optimizer\.lr\)', last), last
    assert not [name for name in os.listdir(tmp_path) if '.pth' in name]

