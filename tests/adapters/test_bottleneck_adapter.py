"""Bottleneck adapters: placements, widths, identity at initialisation, no merging."""
import re
from pathlib import Path

import pytest
import torch

from adapterkit import build_model, count_parameters, load_config
from adapterkit.adapters import BottleneckAdapter, LoRALinear, NotMergeableError

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


def adapted(model):
    return {n: m for n, m in model.backbone.named_modules() if isinstance(m, BottleneckAdapter)}


@pytest.mark.parametrize('placement, added', [
    # sum over blocks of (2 d^2/16 + d/16 + d) per adapter, d = 96, 192, 384, 768
    ('houlsby', 548_520),
    ('pfeiffer', 274_260),
])
def test_adapter_parameter_counts_on_swin_t(placement, added):
    config = CONFIGS / f'adapter/adapter-{placement}_swin-t_pascal-448.py'
    counts = count_parameters(build_model(load_config(str(config))))
    assert counts['backbone_adapter'] == added
    assert counts['backbone_unfrozen'] == 0
    assert counts['frozen'] == 27_517_818


@pytest.mark.parametrize('placement, sublayers', [('houlsby', ('attn', 'mlp')),
                                                  ('pfeiffer', ('mlp',))])
def test_placements_adapt_the_sublayer_outputs_of_every_block(tiny_model, placement,
                                                              sublayers):
    model = tiny_model(dict(type='Adapter', placement=placement))
    assert set(adapted(model)) == {f'layers.{i}.blocks.0.{s}.adapter'
                                   for i in range(4) for s in sublayers}
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {f'{n}.{p}' for n in adapted(model)
                         for p in ('down.weight', 'down.bias', 'up.weight', 'up.bias')}


def test_starts_as_the_identity_and_then_adapts(tiny_model):
    torch.manual_seed(0)
    plain = tiny_model(dict(type='DecoderOnly')).backbone.eval()
    model = tiny_model(dict(type='Adapter'))
    model.backbone.load_state_dict(plain.state_dict(), strict=False)
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = plain.forward_features(x)
        for tap, want in zip(model.backbone.forward_features(x), reference):
            assert torch.equal(tap, want)  # up is zero: exactly the pretrained function
        adapter = model.backbone.layers[2].blocks[0].attn.adapter
        adapter.up.weight.normal_()
        moved = model.backbone.forward_features(x)
    # taps 0 and 1 come before layers.2's blocks, tap 2 after them: the hook really runs
    assert torch.equal(moved[1], reference[1])
    assert not torch.allclose(moved[2], reference[2])


def test_widths_per_stage(tiny_model):
    # tiny widths per stage: 16, 32, 64, 128
    model = tiny_model(dict(type='Adapter', reduction_factor=[2, 4, 8, 16]))
    assert {a.down.out_features for a in adapted(model).values()} == {8}
    model = tiny_model(dict(type='Adapter', placement='pfeiffer', bottleneck=[3, 5, 7, 9]))
    assert [a.down.out_features for a in adapted(model).values()] == [3, 5, 7, 9]
    model = tiny_model(dict(type='Adapter', bottleneck=6))
    assert {a.down.out_features for a in adapted(model).values()} == {6}
    with pytest.raises(ValueError, match=r'bottleneck=\[3, 5\] gives no value for '
                                         r'layers\.2\.blocks\.0\.attn'):
        tiny_model(dict(type='Adapter', bottleneck=[3, 5]))


def test_bad_targets_are_one_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"unknown placement 'houslby'"):
        tiny_model(dict(type='Adapter', placement='houslby'))
    with pytest.raises(ValueError, match=r'target layers\.0\.blocks\.0\.norm1 is a LayerNorm'):
        tiny_model(dict(type='Adapter', targets=r'layers\.0\.blocks\.0\.norm1'))
    with pytest.raises(ValueError, match=r"target pattern 'layers\\\\.9\\\\..\*' matches no"):
        tiny_model(dict(type='Adapter', targets=r'layers\.9\..*'))
    with pytest.raises(ValueError, match=r"layers\.0\.blocks\.0\.mlp has an adapter 'adapter' "
                                         r"already"):
        tiny_model([dict(type='Adapter'), dict(type='Adapter', placement='pfeiffer')])


def test_merge_is_refused_clearly_and_before_anything_changes(tiny_model):
    model = tiny_model([dict(type='LoRA', rank=2), dict(type='Adapter', placement='pfeiffer')])
    qkv = model.backbone.layers[0].blocks[0].attn.qkv
    assert type(qkv) is LoRALinear and hasattr(model.backbone.layers[0].blocks[0].mlp, 'adapter')
    with torch.no_grad():
        qkv.lora_B.normal_()
    weight = qkv.weight.clone()
    with pytest.raises(NotMergeableError, match=r'^Adapter cannot be merged .*nonlinear'):
        model.merge_adapters()
    assert not qkv.merged and torch.equal(qkv.weight, weight)
    with pytest.raises(NotMergeableError, match='Adapter'):
        model.adapters[1].merge(model)


def test_lora_inside_an_adapted_sublayer_composes(tiny_model):
    model = tiny_model([dict(type='Adapter'), dict(type='LoRA', rank=2)])
    attn = model.backbone.layers[1].blocks[0].attn
    assert type(attn.proj) is LoRALinear and isinstance(attn.adapter, BottleneckAdapter)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert {'layers.1.blocks.0.attn.proj.lora_B', 'layers.1.blocks.0.attn.adapter.up.weight'} \
        <= trainable
    assert not any(re.fullmatch(r'.*\.(qkv|proj|fc[12])\.(weight|bias)', n) for n in trainable)
