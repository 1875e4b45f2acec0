"""DoRA end to end, as a user runs it: its shipped config trains through the real command
on synthetic data, and the trained model merges."""
import subprocess
import sys

import torch
from tolerance import assert_identity

import adapterkit

CONFIG = 'dora::quickstart/dora_swin-mini_r4_synthetic-128.py'


def run(*args, cwd):
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f'{args[0]}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


def test_trains_from_its_shipped_config_and_merges(tmp_path):
    data = str(tmp_path / 'data')
    run('synth', data, '--num-train', '4', '--num-val', '2', '--size', '64', cwd=tmp_path)
    work_dir = tmp_path / 'run'
    run('train', CONFIG, '--work-dir', str(work_dir), '--cfg-options',
        f'train_dataloader.dataset.data_root={data}', 'train_dataloader.batch_size=2',
        'train_cfg.max_iters=2', 'default_hooks.logger.interval=1',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None', cwd=tmp_path)

    model = adapterkit.build_model(adapterkit.load_config(CONFIG))
    state = torch.load(work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    model.load_state_dict(state['state_dict'])
    model.double().eval()  # merged against unmerged in float64 (tests/tolerance.py)
    dora_b = model.backbone.layers[0].blocks[0].attn.qkv.dora_B
    assert torch.count_nonzero(dora_b) > 0  # two steps moved B away from zero

    x = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.merge_adapters()
        merged = model(x)
    for task in unmerged:
        assert_identity(merged[task], unmerged[task], task)
