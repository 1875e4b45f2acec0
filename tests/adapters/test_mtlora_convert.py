"""Released MTLoRA checkpoints: a synthetic checkpoint in the reference layout (made here by
the inverse mapping of a random model's state) converts, loads, and gives every value back."""
import re
import sys
import types

import adapterkit.registry  # noqa: F401  (installs the compat shims first)
import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_checkpoint

from adapterkit.adapters.mtlora.convert import convert_checkpoint, read_reference_checkpoint
from adapterkit.cli import main
from adapterkit.errors import CheckpointError
from adapterkit.registry import MODELS

TASKS = ['semseg', 'sal']
MINI_SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                 num_heads=(1, 2, 2, 4), window_size=4)
ADAPTER = dict(type='MTLoRA', plus=True, rank=4, task_rank=dict(semseg=2, sal=3))
MODEL = dict(type='MultiTaskModel', tasks=TASKS, adapter=ADAPTER, backbone=MINI_SWIN,
             head=dict(type='HRNetHead'))
WRAPPED = re.compile(r'(attn\.(qkv|proj)|mlp\.fc[12]|downsample\.reduction)\.(weight|bias)$')


def build(seed):
    init_default_scope('adapterkit')
    torch.manual_seed(seed)
    model = MODELS.build(MODEL)
    with torch.no_grad():  # every tensor distinct, so a mix-up cannot pass
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.randn_like(value))
    return model


def to_reference_layout(model):
    """The model's state as the reference code saves it (MTLORA.md): 'backbone.' keys with
    Microsoft's merge at the end of stage i, the MTLoRA layers' frozen weights under
    '.linear', per-task downsamplers and decoders, recomputed buffers, a classifier."""
    out = {}
    for key, value in model.state_dict().items():
        key = re.sub(r'^backbone\.layers\.(\d+)\.downsample\.',
                     lambda m: f'backbone.layers.{int(m.group(1)) - 1}.downsample.', key)
        key = WRAPPED.sub(lambda m: f'{m.group(1)}.linear.{m.group(3)}', key)
        key = re.sub(r'^heads\.(\w+)\.downsample\.(\d)\.', r'downsampler.\1.downsample_\2.', key)
        key = re.sub(r'^heads\.(\w+)\.last_layer\.', r'decoders.decoders.\1.last_layer.', key)
        out[key] = value
    for name, module in model.backbone.named_modules():
        for buffer in ('relative_position_index', 'attn_mask'):
            if getattr(module, buffer, None) is not None:
                out[f'backbone.{name}.{buffer}'] = getattr(module, buffer)
    out['backbone.head.weight'] = torch.zeros(1000, 128)
    out['backbone.head.bias'] = torch.zeros(1000)
    return out


def save_like_the_reference(path, state):
    """torch.save of the reference's checkpoint dict, with its pickled yacs config."""
    yacs, config = types.ModuleType('yacs'), types.ModuleType('yacs.config')

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    config.CfgNode, yacs.config = CfgNode, config
    sys.modules.update({'yacs': yacs, 'yacs.config': config})
    try:
        node = CfgNode(MODEL=CfgNode(MTLORA=CfgNode(R=[4, 4, 4, 4])))
        node.__dict__['__immutable__'] = True
        torch.save(dict(model=state, optimizer=dict(state={}, param_groups=[]), epoch=299,
                        max_accuracy=0.0, config=node), path)
    finally:
        del sys.modules['yacs'], sys.modules['yacs.config']


@pytest.fixture(scope='module')
def source():
    return build(seed=1)


@pytest.fixture(scope='module')
def reference_file(source, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('reference') / 'mtlora.pth')
    save_like_the_reference(path, to_reference_layout(source))
    return path


def assert_same_state(model, source):
    want = source.state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_converted_checkpoint_loads_every_value_back(source, reference_file, tmp_path):
    config = read_reference_checkpoint(reference_file)['config']  # its code never runs
    assert config['MODEL']['MTLORA']['R'] == [4, 4, 4, 4]
    out = str(tmp_path / 'converted.pth')
    assert convert_checkpoint(reference_file, out)['tensors'] == len(source.state_dict())
    converted = torch.load(out, weights_only=True)
    assert converted['meta']['source'] == 'scale-lab/MTLoRA'
    model = build(seed=2)
    load_checkpoint(model, out, strict=True)  # mmengine's loader, as load_from uses it
    assert_same_state(model, source)


def test_the_reference_state_dict_also_loads_directly(source):
    model = build(seed=3)
    model.load_state_dict({'model': to_reference_layout(source)})  # as a raw file's dict
    assert_same_state(model, source)
    model = build(seed=4)
    model.load_state_dict(to_reference_layout(source))
    assert_same_state(model, source)


def test_the_cli_checks_the_result_against_a_config(cli, reference_file, tmp_path, capsys):
    config = tmp_path / 'mini.py'
    config.write_text(f'default_scope = "adapterkit"\nmodel = {MODEL!r}\n')
    out = tmp_path / 'converted.pth'
    proc = cli('convert-mtlora', reference_file, str(out), '--config', str(config))
    assert f'checked against {config}' in proc.stdout and out.is_file()

    other = tmp_path / 'other.py'
    other.write_text(f'default_scope = "adapterkit"\nmodel = {MODEL!r}\n'
                     'model["adapter"]["rank"] = 8\n')
    refused = tmp_path / 'refused.pth'
    assert main(['convert-mtlora', reference_file, str(refused), '--config', str(other)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('adapterkit convert-mtlora: error: ') and not refused.exists()
    assert 'does not fit the model of the config' in last and 'shape mismatches' in last


def test_an_unknown_key_is_named(tmp_path, source):
    state = to_reference_layout(source)
    state['mystery.weight'] = torch.zeros(1)
    path = str(tmp_path / 'bad.pth')
    torch.save(dict(model=state), path)
    with pytest.raises(ValueError, match=r'1 keys of no known kind: mystery\.weight'):
        convert_checkpoint(path, str(tmp_path / 'out.pth'))


def test_a_checkpoint_of_a_fork_with_task_prompts_is_not_taken_for_mtlora(tmp_path, source):
    # TADFormer saves the reference layout plus prompts and filters: MTLoRA must not
    # half-convert it on load, nor write it out
    state = to_reference_layout(source)
    state['backbone.task_prompts'] = torch.zeros(2, 16)
    state['backbone.layers.0.blocks.1.mlp.fc1.lora_filter.sal.conv2d.weight'] = torch.zeros(4)
    model = build(seed=2)
    assert model.adapters[0].convert_state_dict(state) is None
    with pytest.raises(CheckpointError, match=r'does not fit .* unexpected keys: .*\.linear\.'):
        model.load_state_dict(state)  # left unconverted, so refused
    path = str(tmp_path / 'fork.pth')
    torch.save(dict(model=state), path)
    with pytest.raises(ValueError, match=r'it holds backbone\.task_prompts, which MTLoRA '
                                         r'never saves'):
        convert_checkpoint(path, str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_the_generic_convert_command_converts_through_the_configs_strategy(reference_file,
                                                                           source, tmp_path,
                                                                           capsys):
    config = tmp_path / 'mini.py'
    config.write_text(f'default_scope = "adapterkit"\nmodel = {MODEL!r}\n')
    out = tmp_path / 'converted.pth'
    assert main(['convert', str(config), reference_file, str(out)]) == 0
    assert f'in the layout of {config} to {out}' in capsys.readouterr().out
    converted = torch.load(out, weights_only=False)
    assert converted['meta']['strategies'] == ['MTLoRA']
    model = build(seed=5)
    model.load_state_dict(converted['state_dict'])
    assert_same_state(model, source)

    # a config whose strategies do not know the layout: one line, nothing written
    other = tmp_path / 'lora.py'
    other.write_text(f'default_scope = "adapterkit"\nmodel = {MODEL!r}\n'
                     'model["adapter"] = dict(type="LoRA", rank=2)\n')
    refused = tmp_path / 'refused.pth'
    assert main(['convert', str(other), reference_file, str(refused)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f'adapterkit convert: error: {reference_file}: no strategy of the model '
                    "(LoRA) recognises its layout as its reference code's")
    assert not refused.exists()
