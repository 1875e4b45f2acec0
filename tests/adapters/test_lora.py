"""LoRA: target matching, the update's shape and initialisation, overrides, merging."""
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from tolerance import assert_identity
from torch import nn

from adapterkit import build_model, count_parameters, load_config
from adapterkit.adapters import LoRA, LoRAConv2d, LoRALinear

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
BLOCK_LINEARS = r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])'


@pytest.mark.parametrize('rank', [4, 8, 16, 32])
def test_lora_on_swin_t_adds_70656_parameters_per_rank(rank):
    model = build_model(load_config(str(CONFIGS / f'lora/lora_swin-t_r{rank}_pascal-448.py')))
    counts = count_parameters(model)
    assert counts['backbone_adapter'] == 70_656 * rank  # 282,624 at rank 4
    assert counts['backbone_unfrozen'] == 0
    assert counts['trainable'] == 70_656 * rank + counts['decoders']
    assert counts['frozen'] == 27_517_818  # the whole pretrained backbone


def test_targets_become_lora_layers_that_keep_timm_names(tiny_model):
    plain = tiny_model(dict(type='DecoderOnly'))
    model = tiny_model(dict(type='LoRA', targets=BLOCK_LINEARS, rank=2))
    modules = dict(model.backbone.named_modules())
    targets = [n for n in modules if re.fullmatch(BLOCK_LINEARS, n)]
    assert len(targets) == 4 * 4
    assert all(type(modules[n]) is LoRALinear for n in targets)
    # the pretrained keys are unchanged; LoRA only adds its two factors per target
    keys = set(model.backbone.state_dict())
    assert keys - set(plain.backbone.state_dict()) == {
        f'{n}.{f}' for n in targets for f in ('lora_A', 'lora_B')}
    assert set(plain.backbone.state_dict()) <= keys
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == keys - set(plain.backbone.state_dict())


def test_update_starts_at_zero_with_kaiming_a():
    torch.manual_seed(0)
    base = nn.Linear(12, 20)
    layer = LoRALinear(base, rank=3, scale=2.0)
    assert layer.weight is base.weight and layer.bias is base.bias
    assert layer.lora_A.shape == (3, 12) and layer.lora_B.shape == (20, 3)
    assert torch.count_nonzero(layer.lora_B) == 0
    bound = 1 / 12 ** 0.5  # kaiming_uniform(a=sqrt(5)) on fan_in 12
    assert 0 < layer.lora_A.abs().max() <= bound
    x = torch.randn(5, 12)
    assert torch.equal(layer(x), base(x))


def test_a_pattern_that_matches_nothing_is_an_error_naming_it(tiny_model):
    typo = r'layers\.\d+\.blocks\.\d+\.attn\.qvk'
    with pytest.raises(ValueError, match=re.escape(f"target pattern {typo!r} matches no")):
        tiny_model(dict(type='LoRA', targets=[BLOCK_LINEARS, typo]))
    with pytest.raises(ValueError, match=r"pattern '\(' is not a valid regular expression"):
        tiny_model(dict(type='LoRA', targets='('))


def test_an_unsupported_module_is_an_error_naming_it_and_its_type(tiny_model):
    with pytest.raises(ValueError, match=r'target layers\.0\.blocks\.0\.attn is a '
                                         r'WindowAttention'):
        tiny_model(dict(type='LoRA', targets=r'layers\.0\.blocks\.0\.(attn|mlp\.fc1)'))
    with pytest.raises(ValueError, match=r'target layers\.0\.blocks\.0\.norm1 is a LayerNorm'):
        tiny_model(dict(type='LoRA', targets=r'layers\.0\.blocks\.0\.norm1'))


def test_overrides_set_rank_scale_and_dropout_per_target(tiny_model):
    model = tiny_model(dict(
        type='LoRA', targets=BLOCK_LINEARS, rank=4, alpha=8, dropout=0.1,
        overrides=[dict(pattern=r'layers\.3\..*\.qkv', rank=8, scale=0.5),
                   dict(pattern=r'.*\.fc[12]', rank=2),
                   dict(pattern=r'layers\.3\..*', dropout=0.0)]))
    modules = dict(model.backbone.named_modules())
    qkv3, qkv0 = modules['layers.3.blocks.0.attn.qkv'], modules['layers.0.blocks.0.attn.qkv']
    fc1, proj3 = modules['layers.0.blocks.0.mlp.fc1'], modules['layers.3.blocks.0.attn.proj']
    assert (qkv3.rank, qkv3.scale, qkv3.lora_A.shape[0]) == (8, 0.5, 8)
    assert isinstance(qkv3.lora_dropout, nn.Dropout)  # first matching override only
    assert (qkv0.rank, qkv0.scale, qkv0.lora_dropout.p) == (4, 2.0, 0.1)  # alpha / rank
    assert (fc1.rank, fc1.scale) == (2, 4.0)  # alpha stays 8
    assert isinstance(proj3.lora_dropout, nn.Identity)


@pytest.mark.parametrize('options, message', [
    (dict(overrides=[dict(pattern=r'.*\.norm1', rank=2)]),
     r"override pattern '\.\*\\\\\.norm1' matches no LoRA target"),
    (dict(overrides=[dict(pattern=r'.*\.qkv', rnak=2)]), r"unknown option 'rnak'"),
    (dict(overrides=[dict(rank=2)]), r'has no `pattern`'),
    (dict(alpha=8, scale=2.0), r'give alpha .* or scale, not both'),
    (dict(overrides=[dict(pattern=r'.*\.qkv', rank=0)]), r"override '.*': rank must be a "
                                                         r'positive integer, got 0'),
])
def test_bad_options_are_one_clear_error(tiny_model, options, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(dict(type='LoRA', targets=BLOCK_LINEARS, **options))


def test_anchored_patterns_do_not_hit_swinv2_extra_linears():
    # SwinV2 attention has a continuous position-bias MLP (attn.cpb_mlp.0/.2, both Linear).
    v2 = timm.create_model('swinv2_tiny_window8_256', pretrained=False, img_size=64,
                           embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
                           window_size=4, num_classes=0)
    cpb = [n for n, m in v2.named_modules() if 'cpb_mlp' in n and isinstance(m, nn.Linear)]
    assert len(cpb) == 2 * 4
    LoRA(targets=BLOCK_LINEARS, rank=2).apply(SimpleNamespace(backbone=v2))
    adapted = {n for n, m in v2.named_modules() if isinstance(m, LoRALinear)}
    assert adapted == {f'layers.{i}.blocks.0.{m}' for i in range(4)
                       for m in ('attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2')}
    modules = dict(v2.named_modules())
    assert all(type(modules[n]) is nn.Linear for n in cpb)


def test_conv_lora_on_patch_embed_merges_exactly(tiny_model):
    """In float64, to float64 rounding (tests/tolerance.py)."""
    torch.manual_seed(0)
    model = tiny_model(dict(type='LoRA', targets=['patch_embed.proj', BLOCK_LINEARS],
                            rank=3, scale=1.5)).double().eval()
    conv = model.backbone.patch_embed.proj
    assert type(conv) is LoRAConv2d
    assert conv.lora_A.shape == (3, 3, 4, 4) and conv.lora_B.shape == (16, 3, 1, 1)
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith('lora_B'):
                param.normal_(std=0.05)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.merge_adapters()
        assert not torch.equal(conv.weight, before['patch_embed.proj.weight'])
        merged = model(x)
        model.unmerge_adapters()
        again = model(x)
    for task in unmerged:
        assert_identity(merged[task], unmerged[task], f'{task} merged')
        assert_identity(again[task], unmerged[task], f'{task} unmerged again')
    for key, value in model.backbone.state_dict().items():
        if value.is_floating_point():
            assert_identity(value, before[key], key)
        else:
            assert torch.equal(value, before[key]), key
