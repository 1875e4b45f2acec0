"""The whole pipeline through the real CLI and mmengine Runner, on synthetic data on disk."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


def adapterkit(*args, check=True):
    """Run the adapterkit command in a fresh process, as a user does."""
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'adapterkit {args[0]} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def data_options(root, max_iters):
    return ['--cfg-options',
            f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=4',
            'test_dataloader.batch_size=4',
            f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def val_scalars(work_dir):
    """The validation metrics the Runner logged (last line that has them)."""
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f if 'semseg/mIoU' in line]
    assert lines, f'no validation metrics logged under {work_dir}'
    return lines[-1]


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    proc = adapterkit('synth', root, '--num-train', '8', '--num-val', '4', '--size', '128',
                      '--seed', '3')
    assert 'wrote 8 train + 4 val' in proc.stdout
    return root


def test_train_test_resume_roundtrip(synth_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    adapterkit('train', QUICKSTART, '--work-dir', work_dir, *data_options(synth_root, 4))
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    logged = val_scalars(work_dir)
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'sal/maxF', 'normals/mean'):
        assert key in logged

    # `test` on the saved checkpoint reproduces the validation metrics of training.
    out = str(tmp_path / 'metrics.json')
    show = str(tmp_path / 'show')
    adapterkit('test', QUICKSTART, osp.join(work_dir, 'iter_4.pth'), '--work-dir',
               str(tmp_path / 'test'), '--out', out, '--show-dir', show,
               *data_options(synth_root, 4))
    with open(out) as f:
        tested = json.load(f)
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mean'):
        assert tested[key] == pytest.approx(logged[key], abs=1e-6), key
    for task in ('semseg', 'human_parts', 'sal', 'normals'):
        assert len(glob.glob(osp.join(show, task, '*.png'))) == 4

    # `--resume` continues from the last checkpoint (torch >= 2.6 safe loading) to iter 6.
    proc = adapterkit('train', QUICKSTART, '--work-dir', work_dir, '--resume',
                      *data_options(synth_root, 6))
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work_dir, 'iter_6.pth'))
    state = torch.load(osp.join(work_dir, 'iter_6.pth'), map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 6


def test_malicious_checkpoint_is_refused_by_the_cli(synth_root, tmp_path):
    bad = tmp_path / 'bad.pth'
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    torch.save({'state_dict': {}, 'x': Payload()}, bad)
    proc = adapterkit('test', QUICKSTART, str(bad), '--work-dir', str(tmp_path / 'w'),
                      *data_options(synth_root, 2), check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('adapterkit test: error:') and 'refused' in last and str(bad) in last
    assert not marker.exists()


@pytest.mark.parametrize('config, trainable, decoders', [
    ('configs/full/full_swin-t_pascal-448.py', 29_464_442, 1_946_624),
    ('configs/decoder_only/decoder-only_swin-t_pascal-448.py', 1_946_624, 1_946_624),
])
def test_params_reports_the_reference_counts(config, trainable, decoders):
    proc = adapterkit('params', config, '--json')
    counts = json.loads(proc.stdout)
    assert counts['trainable'] == trainable
    assert counts['decoders'] == decoders
    assert counts['total'] == 27_517_818 + 1_946_624
    assert counts['backbone_adapter'] == 0


def test_unknown_task_is_one_clear_line(tmp_path):
    proc = adapterkit('params', QUICKSTART, '--cfg-options', 'model.tasks.segsem.loss_weight=1',
                      check=False)
    assert proc.returncode == 2
    assert "unknown task 'segsem'" in proc.stderr.strip().splitlines()[-1]
