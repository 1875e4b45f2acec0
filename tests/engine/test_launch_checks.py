"""Distributed configs and the launch checks that need no second process."""
import importlib.util
import os.path as osp

import pytest
import torch
from torch import nn

from adapterkit import build_model, load_config
from adapterkit.cli import main
from adapterkit.engine.optim import amp_optim_wrapper

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FSDP = osp.join(REPO, 'configs/distributed/full_swin-t_pascal-448_fsdp.py')
DEEPSPEED = osp.join(REPO, 'configs/distributed/full_swin-t_pascal-448_deepspeed.py')
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')


def last_error_line(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_fsdp_config_wraps_each_swin_block():
    from mmengine.registry import FUNCTIONS
    from timm.models.swin_transformer import SwinTransformerBlock

    cfg = load_config(FSDP)
    assert cfg.strategy.type == 'FSDPStrategy' and cfg.strategy.state_dict_cfg == 'full'
    # resolved as mmengine's MMFullyShardedDataParallel resolves it
    policy = FUNCTIONS.get(cfg.strategy.model_wrapper.auto_wrap_policy.type)
    model = build_model(cfg)
    units = [name for name, module in model.named_modules()
             if policy(module, recurse=False, nonwrapped_numel=0)]
    blocks = [name for name, module in model.named_modules()
              if isinstance(module, SwinTransformerBlock)]
    assert units == blocks and len(units) == 12  # Swin-T: 2 + 2 + 6 + 2


def test_fsdp_needs_a_distributed_launch(capsys):
    assert main(['train', FSDP]) == 2
    assert 'torchrun' in last_error_line(capsys)


@pytest.mark.skipif(importlib.util.find_spec('deepspeed') is not None,
                    reason='deepspeed is installed')
def test_deepspeed_without_the_package_is_one_clear_line(capsys):
    cfg = load_config(DEEPSPEED)
    assert cfg.strategy.type == 'DeepSpeedStrategy'
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert main(['train', DEEPSPEED, '--launcher', 'pytorch']) == 2
    assert last_error_line(capsys) == ('adapterkit train: error: DeepSpeedStrategy needs the '
                                       'deepspeed package and CUDA GPUs: pip install deepspeed')


def test_amp_leaves_deepspeed_precision_to_its_strategy():
    with pytest.raises(ValueError, match='DeepSpeed'):
        amp_optim_wrapper(dict(type='DeepSpeedOptimWrapper'), 'cuda')


def test_sync_bn_converts_every_head_batchnorm():
    # What the Runner does with cfg.sync_bn='torch' in a distributed run.
    from mmengine.model import convert_sync_batchnorm

    model = build_model(load_config(QUICKSTART))
    count = sum(isinstance(m, nn.BatchNorm2d) for m in model.heads.modules())
    assert count == len(model.tasks)  # one in each HRNet head
    model = convert_sync_batchnorm(model, 'torch')
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.heads.modules()) == count
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())


@pytest.mark.skipif(torch.cuda.is_available(), reason='SyncBN runs on GPUs')
def test_sync_bn_on_cpu_is_one_clear_line(capsys):
    argv = ['train', QUICKSTART, '--launcher', 'pytorch', '--cfg-options', 'sync_bn=torch']
    assert main(argv) == 2
    assert 'sync_bn needs CUDA GPUs' in last_error_line(capsys)
    assert not torch.distributed.is_initialized()  # refused before starting anything
