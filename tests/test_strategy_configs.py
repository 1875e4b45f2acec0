"""Every registered strategy (adapterkit's and the installed plugins') ships a quickstart
config, and it trains and evaluates through the real CLI; `export --merge` refuses a
strategy that cannot merge in one line and writes nothing.

A strategy's quickstart config is the first by name, over every provider's ``quickstart/``
folder, whose ``model.adapter`` is that strategy alone.
"""
import glob
import os.path as osp

import pytest

from adapterkit import load_config
from adapterkit.cli import main
from adapterkit.plugins import load_plugins
from adapterkit.registry import ADAPTERS


def quickstart_configs():
    """``{strategy: 'PROVIDER::quickstart/NAME.py'}``."""
    paths = {}
    for provider, folders in load_plugins().config_providers().items():
        for folder in folders:
            for path in glob.glob(osp.join(folder, 'quickstart', '*.py')):
                paths[f'{provider}::quickstart/{osp.basename(path)}'] = path
    found = {}
    for config, path in sorted(paths.items()):
        adapter = load_config(path).model.get('adapter')
        if isinstance(adapter, dict):
            found.setdefault(adapter['type'], config)
    return found


ADAPTERS.import_from_location()
CONFIGS = quickstart_configs()


@pytest.mark.parametrize('strategy', sorted(ADAPTERS.module_dict))
def test_quickstart_strategy_trains_and_evaluates(data_options, val_scalars, synth_root,
                                                  tmp_path, capsys, strategy):
    # the command's own entry point, in this process: a fresh process per strategy would
    # add only its start-up (tests/test_cli_pipeline.py runs the command as a user does)
    config = CONFIGS.get(strategy)
    assert config, f'{strategy} ships no quickstart config (docs/adding_a_method.md)'
    work_dir = str(tmp_path / 'run')
    assert main(['train', config, '--work-dir', work_dir, *data_options(synth_root, 2)]) == 0
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    logged = val_scalars(work_dir)
    assert {'semseg/mIoU', 'human_parts/mIoU', 'sal/maxF', 'normals/mean'} <= set(logged)

    if not ADAPTERS.get(strategy).mergeable:  # refused in one line, nothing written
        out = str(tmp_path / 'merged.safetensors')
        capsys.readouterr()
        assert main(['export', config, osp.join(work_dir, 'iter_2.pth'), out, '--merge']) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
            f'adapterkit export: error: {strategy} cannot be merged into the backbone weights')
        assert not osp.exists(out)
