"""DoRA's math, on a bare layer and inside a small multi-task Swin built through the registry.
Values are compared in float64, to float64 rounding (adapterkit's tests/tolerance.py)."""
import copy
import re

import pytest
import torch
from tolerance import assert_identity
from torch import nn

import adapterkit
from adapterkit.plugins import load_plugins
from adapterkit_dora import DoRA, DoRALinear

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
            if name.endswith(('lora_B', 'magnitude')):
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
    assert torch.equal(layer.magnitude, reference.weight.norm(dim=1))
    assert layer.magnitude.shape == (7,)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0
    x = randn(5, 12)
    assert_identity(layer(x), reference(x))


def test_layer_is_magnitude_times_normalised_direction():
    layer = DoRALinear(nn.Linear(6, 4).double(), rank=2, scale=0.5)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.magnitude.uniform_(0.5, 2.0)
    v = layer.weight + 0.5 * layer.lora_B @ layer.lora_A
    expected = layer.magnitude[:, None] * v / v.norm(dim=1, keepdim=True)
    x = randn(3, 6)
    assert_identity(layer(x), x @ expected.T + layer.bias)
    # every row of the adapted weight has exactly the learnt magnitude as its norm
    assert_identity(expected.norm(dim=1), layer.magnitude, 'norm')


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
    assert torch.equal(qkv.magnitude, qkv.weight.norm(dim=1))  # the same norm, recomputed
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
        for p in ('lora_A', 'lora_B', 'magnitude'))
    assert set(model.adapters[0].trainable_state_dict(model)) == set(trainable)
    # wrapped layers keep their names, so pretrained keys still line up
    assert 'layers.0.blocks.0.attn.qkv.weight' in model.backbone.state_dict()


@pytest.mark.parametrize('adapter, message', [
    (dict(type='DoRA', targets=[r'layers\.\d+\.nothing']),
     re.escape(r"target 'layers\.\d+\.nothing' matches no backbone module")),
    (dict(type='DoRA', targets=[r'layers\.0\.blocks\.0\.attn']), 'DoRA adapts nn.Linear'),
    (dict(type='DoRA', rank=0), 'rank must be a positive integer'),
])
def test_bad_targets_and_rank_are_clear_errors(adapter, message):
    with pytest.raises(ValueError, match=message):
        build(adapter)
