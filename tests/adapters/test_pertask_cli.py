"""The quickstart configs of per-task LoRA and VPT-deep resume and export through the CLI
(training and evaluating them is tests/test_strategy_configs.py's walk): a run resumes from
its checkpoint, its adapter-only file restores it, and a per-task model exports one task's
merged backbone, which loads strictly into timm."""
import os.path as osp

import pytest
import timm
import torch
from safetensors.torch import load_file

from adapterkit import build_model, load_config
from adapterkit.cli import main
from adapterkit.models.checkpoint import load_adapter, read_metadata

PER_TASK_LORA = 'configs/quickstart/pertask-lora_swin-mini_synthetic-128.py'
VPT_DEEP = 'configs/quickstart/vpt-deep_swin-mini_synthetic-128.py'
MINI = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4)


def mini_swin():
    return timm.create_model('swin_tiny_patch4_window7_224', img_size=128, num_classes=0,
                             **MINI)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp('pretrained') / 'swin_mini.pth')
    torch.save(mini_swin().state_dict(), path)
    return path


@pytest.fixture(scope='module', params=[PER_TASK_LORA, VPT_DEEP], ids=['pertask', 'vpt'])
def resumed(request, cli, data_options, synth_root, pretrained, tmp_path_factory):
    """The config trained 2 iterations, then resumed to 3: (config, work dir, options)."""
    config, root = request.param, tmp_path_factory.mktemp('run')
    options = data_options(synth_root, 2) + [
        f'model.backbone.pretrained={pretrained}', 'train_cfg.val_interval=100']
    cli('train', config, '--work-dir', str(root / 'first'), *options)
    work_dir = str(root / 'resumed')
    options[options.index('train_cfg.max_iters=2')] = 'train_cfg.max_iters=3'
    proc = cli('train', config, '--work-dir', work_dir, '--resume',
               str(root / 'first' / 'iter_2.pth'), *options)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert osp.isfile(osp.join(work_dir, 'iter_3.pth'))
    return config, work_dir, options


def test_its_adapter_only_export_restores_the_resumed_run(resumed, pretrained, tmp_path):
    config, work_dir, options = resumed
    checkpoint, out = osp.join(work_dir, 'iter_3.pth'), str(tmp_path / 'adapter.safetensors')
    assert main(['export', config, checkpoint, out, '--adapter-only', *options]) == 0
    cfg = load_config(config, {'model.backbone.pretrained': pretrained})
    trained, restored = build_model(cfg).eval(), build_model(cfg).eval()
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    trained.load_state_dict(state)
    load_adapter(restored, out)
    images = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        want, got = trained(images), restored(images)
    assert all(torch.equal(got[task], want[task]) for task in want)


def test_a_per_task_model_exports_one_task_merged_into_plain_timm(resumed, tmp_path, capsys):
    config, work_dir, options = resumed
    if config != PER_TASK_LORA:
        pytest.skip('VPT cannot merge (tests/test_strategy_configs.py checks the refusal)')
    checkpoint, out = osp.join(work_dir, 'iter_3.pth'), str(tmp_path / 'sal.safetensors')
    assert main(['export', config, checkpoint, out, '--merge', '--task', 'sal',
                 *options]) == 0
    assert f'wrote the merged model of task sal of {checkpoint} to {out}' in \
        capsys.readouterr().out
    assert read_metadata(out)['task'] == 'sal'
    state = load_file(out)
    assert {k.split('.')[1] for k in state if k.startswith('heads.')} == {'sal'}
    swin = mini_swin()
    swin.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                          if k.startswith('backbone.')}, strict=True)

    assert main(['export', config, checkpoint, out, '--adapter-only', '--task', 'sal']) == 2
    assert capsys.readouterr().err.strip() == (
        'adapterkit export: error: export: --task picks the task of a merged export; use it '
        'with --merge')
