"""The whole pipeline through the real CLI and mmengine Runner, on synthetic data on disk."""
import glob
import json
import os
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


def test_train_test_resume_roundtrip(cli, data_options, val_scalars, synth_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    cli('train', QUICKSTART, '--work-dir', work_dir, *data_options(synth_root, 4))
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    logged = val_scalars(work_dir)
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'sal/maxF', 'normals/mean'):
        assert key in logged

    # `test` on the saved checkpoint reproduces the validation metrics of training, and
    # prints them even where the config logs errors only (as compare's run configs do), and
    # never touches the train data (its root here does not exist).
    out = str(tmp_path / 'metrics.json')
    show = str(tmp_path / 'show')
    proc = cli('test', QUICKSTART, osp.join(work_dir, 'iter_4.pth'), '--work-dir',
               str(tmp_path / 'test'), '--out', out, '--show-dir', show,
               *data_options(synth_root, 4), 'log_level=ERROR',
               f'train_dataloader.dataset.data_root={tmp_path}/none')
    with open(out) as f:
        tested = json.load(f)
    # the same float32 computation on the same weights, images, batches and threads: the
    # same bits, and the metrics reduce them in the same order
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mean'):
        assert tested[key] == logged[key], key
    lines = proc.stdout.splitlines()
    start = lines.index(osp.join(work_dir, 'iter_4.pth')) + 1  # mmengine prints before it
    printed = dict(line.split() for line in lines[start:])
    assert printed.keys() == tested.keys()
    # printed to 4 decimals
    assert float(printed['semseg/mIoU']) == pytest.approx(tested['semseg/mIoU'], abs=5e-5)
    with open(tmp_path / 'test' / 'metrics.json') as f:
        record = json.load(f)
    assert (record['split'], record['iter'], record['metrics']) == ('test', 4, tested)
    for task in ('semseg', 'human_parts', 'sal', 'normals'):
        assert len(glob.glob(osp.join(show, task, '*.png'))) == 4

    # `--resume` continues from the last checkpoint (torch >= 2.6 safe loading) to iter 6.
    proc = cli('train', QUICKSTART, '--work-dir', work_dir, '--resume',
               *data_options(synth_root, 6))
    assert 'resumed epoch: 0, iter: 4' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work_dir, 'iter_6.pth'))
    state = torch.load(osp.join(work_dir, 'iter_6.pth'), map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == 6

    # Resuming the finished run says so at once, and starts no Runner (no new log folder).
    runs = os.listdir(work_dir)
    proc = cli('train', QUICKSTART, '--work-dir', work_dir, '--resume',
               *data_options(synth_root, 6))
    assert proc.stdout.strip().splitlines() == [
        f'{work_dir}: finished: {osp.join(work_dir, "iter_6.pth")} is at iter 6 of 6 '
        '(train_cfg.max_iters); nothing to resume (raise max_iters to train on)']
    assert os.listdir(work_dir) == runs


def test_malicious_checkpoint_is_refused_by_the_cli(cli, data_options, synth_root, tmp_path):
    bad = tmp_path / 'bad.pth'
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    torch.save({'state_dict': {}, 'x': Payload()}, bad)
    proc = cli('test', QUICKSTART, str(bad), '--work-dir', str(tmp_path / 'w'),
               *data_options(synth_root, 2), check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('adapterkit test: error:') and 'refused' in last and str(bad) in last
    assert not marker.exists()


@pytest.mark.parametrize('config, trainable, decoders', [
    ('configs/full/full_swin-t_pascal-448.py', 29_464_442, 1_946_624),
    ('configs/decoder_only/decoder-only_swin-t_pascal-448.py', 1_946_624, 1_946_624),
])
def test_params_reports_the_reference_counts(cli, config, trainable, decoders):
    proc = cli('params', config, '--json')
    counts = json.loads(proc.stdout)
    assert counts['trainable'] == trainable
    assert counts['decoders'] == decoders
    assert counts['total'] == 27_517_818 + 1_946_624
    assert counts['backbone_adapter'] == 0


def test_unknown_task_is_one_clear_line(cli, tmp_path):
    proc = cli('params', QUICKSTART, '--cfg-options', 'model.tasks.segsem.loss_weight=1',
               check=False)
    assert proc.returncode == 2
    assert "unknown task 'segsem'" in proc.stderr.strip().splitlines()[-1]
