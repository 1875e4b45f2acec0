"""Every strategy's quickstart config trains and evaluates through the real CLI."""
import os.path as osp

import pytest


@pytest.mark.parametrize('method', ['lora', 'adapter-houlsby', 'adapter-pfeiffer', 'bitfit'])
def test_quickstart_strategy_trains_and_evaluates(cli, data_options, val_scalars, synth_root,
                                                  tmp_path, method):
    config = f'configs/quickstart/{method}_swin-mini_synthetic-128.py'
    work_dir = str(tmp_path / 'run')
    cli('train', config, '--work-dir', work_dir, *data_options(synth_root, 2))
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    logged = val_scalars(work_dir)
    assert {'semseg/mIoU', 'human_parts/mIoU', 'sal/maxF', 'normals/mean'} <= set(logged)

    if method == 'adapter-houlsby':  # nonlinear: merging is refused in one line
        out = str(tmp_path / 'merged.safetensors')
        proc = cli('export', config, osp.join(work_dir, 'iter_2.pth'), out, '--merge',
                   check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1].startswith(
            'adapterkit export: error: Adapter cannot be merged into the backbone weights')
        assert not osp.exists(out)
