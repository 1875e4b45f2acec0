"""DoRA's math, on a bare layer and inside a small multi-task Swin built through the registry.
Values are compared in float64, to float64 rounding (adapterkit's tests/tolerance.py)."""
import ast
import copy
import re
from pathlib import Path

import pytest
import torch
from tolerance import assert_identity
from torch import nn

import adapterkit
import adapterkit_dora
from adapterkit.plugins import load_plugins
from adapterkit_dora import DoRA, DoRALinear

NOTHING = r'layers\.\d+\.nothing'
TASKS = dict(semseg=dict(loss_weight=1.0), sal=dict(loss_weight=1.0))


def model_cfg(adapter):
    return dict(
        type='MultiTaskModel',
        backbone=dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(1, 1, 1, 1),
                      num_heads=(1, 1, 2, 4), window_size=4),
        tasks=TASKS, head=dict(type='HRNetHead'), adapter=adapter)


def build(adapter):
    torch.manual_seed(0)
    return adapterkit.build_model(model_cfg(adapter)).double().eval()


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def perturb(model):
    """Move every DoRA parameter away from its initial value, as training would."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith(('dora_B', 'dora_magnitude')):
                param.add_(0.1 * torch.randn(param.shape, generator=gen))


def outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_the_installed_plugin_registers_dora():
    dora = next(p for p in load_plugins().plugins if p.name == 'dora')
    assert dora.status == 'loaded', dora.error
    assert ('ADAPTERS', 'DoRA') in dora.modules
    assert adapterkit.registry.ADAPTERS.get('DoRA') is DoRA


def test_layer_starts_as_the_pretrained_layer():
    base = nn.Linear(12, 7).double()
    reference = copy.deepcopy(base)
    layer = DoRALinear(base, rank=3, scale=2.0)
    # per output unit: the same norm of the same weights
    assert torch.equal(layer.dora_magnitude, reference.weight.norm(dim=1))
    assert layer.dora_magnitude.shape == (7,)
    assert torch.count_nonzero(layer.dora_B) == 0 and torch.count_nonzero(layer.dora_A) > 0
    x = randn(5, 12)
    assert_identity(layer(x), reference(x))


def test_layer_is_magnitude_times_normalised_direction():
    layer = DoRALinear(nn.Linear(6, 4).double(), rank=2, scale=0.5)
    with torch.no_grad():
        layer.dora_B.normal_()
        layer.dora_magnitude.uniform_(0.5, 2.0)
    v = layer.weight + 0.5 * layer.dora_B @ layer.dora_A
    expected = layer.dora_magnitude[:, None] * v / v.norm(dim=1, keepdim=True)
    x = randn(3, 6)
    assert_identity(layer(x), x @ expected.T + layer.bias)
    # every row of the adapted weight has exactly the learnt magnitude as its norm
    assert_identity(expected.norm(dim=1), layer.dora_magnitude, 'norm')


def test_step_zero_equals_the_pretrained_network():
    plain, dora = build(dict(type='DecoderOnly')), build(dict(type='DoRA', rank=2))
    # the pretrained weights arrive after injection (as init_weights loads them): the
    # magnitude follows them, so the adapted network still starts as the pretrained one
    dora.load_state_dict(plain.state_dict(), strict=False)
    x = randn(2, 3, 64, 64)
    want, got = outputs(plain, x), outputs(dora, x)
    for task in TASKS:
        assert_identity(got[task], want[task], task)


def test_magnitude_follows_a_pretrained_file(tmp_path):
    plain, dora = build(dict(type='DecoderOnly')), build(dict(type='DoRA', rank=2))
    with torch.no_grad():
        for param in plain.backbone.parameters():
            param.mul_(1.5)
    path = tmp_path / 'pretrained.pth'
    torch.save(plain.backbone.state_dict(), path)
    dora.backbone.load_pretrained(str(path))
    qkv = dora.backbone.layers[0].blocks[0].attn.qkv
    assert torch.equal(qkv.dora_magnitude, qkv.weight.norm(dim=1))  # the same norm, recomputed
    assert torch.equal(qkv.weight, plain.backbone.layers[0].blocks[0].attn.qkv.weight)


def test_merge_equals_unmerged_and_unmerge_restores_the_weights():
    model = build(dict(type='DoRA', rank=4, alpha=8.0))
    perturb(model)
    weights = {n: p.clone() for n, p in model.backbone.named_parameters()
               if n.endswith('.weight')}
    x = randn(2, 3, 64, 64)
    unmerged = outputs(model, x)
    model.merge_adapters()
    merged = outputs(model, x)
    for task in TASKS:
        assert_identity(merged[task], unmerged[task], task)
    qkv = 'layers.0.blocks.0.attn.qkv.weight'
    assert not torch.allclose(dict(model.backbone.named_parameters())[qkv], weights[qkv])
    model.merge_adapters()  # merging twice changes nothing
    assert torch.equal(outputs(model, x)['sal'], merged['sal'])
    model.unmerge_adapters()
    for name, param in model.backbone.named_parameters():
        if name in weights:
            assert_identity(param, weights[name], name)


def test_trains_only_its_own_parameters():
    model = build(dict(type='DoRA', targets=r'layers\.\d+\.blocks\.\d+\.attn\.qkv', rank=2))
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert sorted(trainable) == sorted(
        f'layers.{i}.blocks.0.attn.qkv.{p}' for i in range(4)
        for p in ('dora_A', 'dora_B', 'dora_magnitude'))
    assert set(model.adapters[0].trainable_state_dict(model)) == set(trainable)
    # wrapped layers keep their names, so pretrained keys still line up
    assert 'layers.0.blocks.0.attn.qkv.weight' in model.backbone.state_dict()


@pytest.mark.parametrize('adapter, message', [
    (dict(type='DoRA', targets=[NOTHING]),
     re.escape(f'DoRA: target pattern {NOTHING!r} matches no backbone module')),
    (dict(type='DoRA', targets=[r'layers\.0\.blocks\.0\.attn']), 'DoRA adapts nn.Linear'),
    (dict(type='DoRA', rank=0), 'rank must be a positive integer'),
])
def test_bad_targets_and_rank_are_clear_errors(adapter, message):
    with pytest.raises(ValueError, match=message):
        build(adapter)


def test_a_bad_target_among_good_ones_leaves_the_model_as_it_was():
    model = build(dict(type='DecoderOnly'))
    before = {name: type(module) for name, module in model.backbone.named_modules()}
    strategy = DoRA(targets=[r'layers\.\d+\.blocks\.0\.attn\.qkv',
                             r'layers\.3\.blocks\.0\.attn'])
    with pytest.raises(ValueError, match=r'target layers\.3\.blocks\.0\.attn is a '
                                         r'WindowAttention'):
        strategy.apply(model)  # the qkv layers come first and were all fine
    assert {name: type(module) for name, module in model.backbone.named_modules()} == before
    assert strategy.trained_names == []
    with pytest.raises(ValueError, match=r'target layers\.0\.blocks\.0\.attn\.qkv has DoRA '
                                         r'already'):
        DoRA(rank=2).apply(build(dict(type='DoRA', rank=2)))


def test_the_plugin_imports_nothing_private_from_adapterkit():
    """A plugin author copies this package: it must run on adapterkit's public API only."""
    source = Path(adapterkit_dora.__file__).parent
    private = []
    for path in sorted(source.rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('adapterkit'):
                names = [node.module, *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and node.attr.startswith('_'):
                names = [node.attr] if _reads_adapterkit(node.value) else []
            else:
                continue
            private += [f'{path.name}: {name}' for name in names
                        if any(part.startswith('_') and not part.startswith('__')
                               for part in name.split('.'))]
    assert private == []


def _reads_adapterkit(node) -> bool:
    """Whether an attribute chain starts at the name ``adapterkit``."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id == 'adapterkit'
