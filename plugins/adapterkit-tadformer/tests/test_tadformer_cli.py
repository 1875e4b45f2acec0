"""TADFormer end to end, as a user gets it: the package installs from its folder into a clean
target and adapterkit lists it from there (a fresh process), and its shipped quickstart
config trains, resumes and evaluates through the CLI's own entry (in this process, which
saves two interpreter starts) on synthetic data. adapterkit's tests/test_strategy_configs.py
trains and evaluates it in a fresh process too, and tests/adapters/test_contract.py runs it
through the strategy contract."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from adapterkit.cli import main
from adapterkit.datasets.synthetic import synthesize

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]  # adapterkit's checkout, which holds this plugin
CONFIG = 'tadformer::quickstart/tadformer_swin-mini_r4_synthetic-128.py'


def run(*args, cwd, pythonpath):
    """``adapterkit ARGS`` in a fresh process that sees adapterkit and ``pythonpath`` only
    (no source checkout of the plugin on the path)."""
    path = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
            if p and 'adapterkit-tadformer' not in p and 'tadformer-plugin' not in p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pythonpath, str(REPO), *path]))
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f'{args[0]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


def test_installs_is_listed_and_its_quickstart_trains_resumes_and_evaluates(tmp_path):
    target = tmp_path / 'installed'
    pip = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                          '--no-build-isolation', '--target', str(target), str(PLUGIN)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert (target / 'adapterkit_tadformer/configs/quickstart').is_dir()  # package data

    listed = run('plugins', '--json', cwd=tmp_path, pythonpath=str(target))
    plugin = next(p for p in json.loads(listed.stdout)['plugins'] if p['name'] == 'tadformer')
    assert (plugin['distribution'], plugin['status']) == ('adapterkit_tadformer', 'loaded')
    assert plugin['modules'] == [dict(registry='ADAPTERS', name='TADFormer')]
    assert all(Path(d).is_relative_to(target) for d in plugin['config_dirs'])

    data = synthesize(str(tmp_path / 'data'), num_train=4, num_val=2, size=64)
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
               f'val_dataloader.dataset.data_root={data}', 'train_dataloader.batch_size=2',
               'val_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=1',
               'default_hooks.logger.interval=1', 'train_cfg.val_interval=2']
    first, resumed = tmp_path / 'first', tmp_path / 'resumed'
    assert main(['train', CONFIG, '--work-dir', str(first), *options,
                 'train_cfg.max_iters=1']) == 0
    assert main(['train', CONFIG, '--work-dir', str(resumed), '--resume',
                 str(first / 'iter_1.pth'), *options, 'train_cfg.max_iters=2']) == 0
    logs = ''.join(p.read_text() for p in resumed.glob('*/*.log'))
    assert 'resumed epoch: 0, iter: 1' in logs
    assert 'semseg/mIoU' in logs and 'normals/mean' in logs  # evaluated at the end

    first = torch.load(first / 'iter_1.pth', weights_only=False)['state_dict']
    second = torch.load(resumed / 'iter_2.pth', weights_only=False)['state_dict']
    prompts = 'backbone.tad_prompts'
    assert not torch.equal(first[prompts], second[prompts])  # the resumed step trained them
    frozen = 'backbone.layers.1.downsample.reduction.weight'
    assert torch.equal(first[frozen], second[frozen])
