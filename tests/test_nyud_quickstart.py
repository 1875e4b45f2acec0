"""NYUD-MT end to end through the real CLI: synth, train, Δm, resume, test, broken data."""
import glob
import json
import os.path as osp
import shutil

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs/quickstart/mtlora_swin-mini_nyud-128.py')
# Synthetic data has no published references; any positive values exercise Δm.
REFERENCES = dict(semseg=10.0, depth=1.0, normals=30.0, edge=20.0)
HIGHER_IS_BETTER = dict(semseg=True, depth=False, normals=False, edge=True)
PRIMARY = dict(semseg='semseg/mIoU', depth='depth/rmse', normals='normals/mean',
               edge='edge/odsF')


def _references(*evaluators):
    return [f'{e}.references.{task}={value}' for e in evaluators
            for task, value in REFERENCES.items()]


@pytest.fixture(scope='module')
def nyud_root(cli, tmp_path_factory):
    root = str(tmp_path_factory.mktemp('nyud') / 'data')
    proc = cli('synth', root, '--layout', 'nyud', '--num-train', '6', '--num-val', '2',
               '--size', '48x64', '--seed', '2')
    assert 'wrote 6 train + 2 val synthetic scenes (48x64, seed 2, NYUD-MT layout)' in proc.stdout
    return root


def test_nyud_quickstart_trains_scores_delta_m_resumes_and_tests(cli, data_options, nyud_root,
                                                                   tmp_path):
    work_dir = str(tmp_path / 'run')
    cli('train', CONFIG, '--work-dir', work_dir, *data_options(nyud_root, 2),
        *_references('val_evaluator'))
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    proc = cli('train', CONFIG, '--work-dir', work_dir, '--resume',
               *data_options(nyud_root, 4), *_references('val_evaluator'))
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    with open(osp.join(work_dir, 'metrics.json')) as f:  # the last validation, at iter 4
        record = json.load(f)
    assert (record['split'], record['iter']) == ('val', 4)
    logged = record['metrics']
    for key in ('depth/abs_rel', 'depth/delta1', 'depth/log_rmse', *PRIMARY.values()):
        assert key in logged
    # Δm from the logged metrics and the references, by its definition.
    gains = [(logged[PRIMARY[t]] - ref) / ref * 100 * (1 if HIGHER_IS_BETTER[t] else -1)
             for t, ref in REFERENCES.items()]
    assert logged['delta_m'] == pytest.approx(sum(gains) / 4, rel=1e-6)

    # Testing needs the test split only: the train and val roots point nowhere.
    missing = str(tmp_path / 'no-train-data')
    out = str(tmp_path / 'metrics.json')
    test_dir = str(tmp_path / 'test')
    cli('test', CONFIG, osp.join(work_dir, 'iter_4.pth'), '--work-dir', test_dir, '--out', out,
        '--cfg-options', f'train_dataloader.dataset.data_root={missing}',
        f'val_dataloader.dataset.data_root={missing}',
        f'test_dataloader.dataset.data_root={nyud_root}', 'test_dataloader.batch_size=4',
        *_references('test_evaluator'))
    with open(out) as f:
        tested = json.load(f)
    with open(osp.join(test_dir, 'metrics.json')) as f:
        assert json.load(f)['split'] == 'test'
    for key in (*PRIMARY.values(), 'delta_m'):
        assert tested[key] == pytest.approx(logged[key], abs=1e-6), key


def test_a_broken_image_stops_training_before_it_starts(cli, data_options, nyud_root,
                                                        tmp_path):
    root = str(tmp_path / 'data')
    shutil.copytree(nyud_root, root)
    image = osp.join(root, 'images/synth_000003.png')
    with open(image, 'rb') as f:
        data = f.read()
    with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])
    work_dir = str(tmp_path / 'run')
    proc = cli('train', CONFIG, '--work-dir', work_dir, *data_options(root, 2), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"adapterkit train: error: NYUD-MT split 'train': {image}: truncated PNG (it does not "
        f"end with the IEND chunk)")
    assert not glob.glob(osp.join(work_dir, '*.pth'))


@pytest.mark.parametrize('config, trainable', [
    ('full/full_swin-t_nyud-448.py', 29_478_495),
    ('decoder_only/decoder-only_swin-t_nyud-448.py', 1_960_677),
    ('lora/lora_swin-t_r16_nyud-448.py', 1_960_677 + 70_656 * 16),
    ('mtlora/mtlora_swin-t_r16_nyud-448.py', 4_967_199),
    ('mtlora/mtlora_swin-t_r64_nyud-448.py', 8_358_687),
    ('mtlora/mtlora-plus_swin-t_r16_nyud-448.py', 4_312_863),
])
def test_nyud_configs_train_what_their_comments_say(config, trainable):
    from adapterkit import build_model, count_parameters, load_config
    path = osp.join(REPO, 'configs', config)
    cfg = load_config(path)
    assert list(cfg.model.tasks) == ['semseg', 'depth', 'normals', 'edge']
    assert count_parameters(build_model(cfg))['trainable'] == trainable
    with open(path) as f:
        assert f'{trainable:,}' in f.read()


def test_the_nyud_suite_derives_identical_runs_and_its_single_task_references():
    from adapterkit.engine.compare import plan
    from adapterkit.engine.compare_suite import load_suite
    runs = plan(load_suite(osp.join(REPO, 'configs/compare/nyud_mt.py')), 'unused')
    assert [r.name for r in runs][:4] == [f'single-task_{t}' for t in REFERENCES]
    assert all(r.error is None for r in runs), [r.error for r in runs]
    assert dict(runs[0].cfg.model.tasks) == {'semseg': dict(loss_weight=1.0, num_classes=40)}
