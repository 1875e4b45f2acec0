"""Hugging Face peft folders: adapterkit -> peft -> adapterkit with the real ``peft`` package
on timm Swins, features and parameter counts equal, and one line where peft cannot follow.

Tolerance: both sides run in float64 and agree to float64 rounding (tests/tolerance.py:
3.7e-9 of a tap's largest value); with taps below 100 that is within 1e-6, the figure the
issue asks for, and fails where the two sides compute something different (a wrong scale,
factor or target)."""
import json
import os.path as osp

import pytest
import timm
import torch

peft = pytest.importorskip('peft')  # the `test` extra installs it

from adapterkit import build_model, load_config  # noqa: E402
from adapterkit.errors import CheckpointError, StrategyError  # noqa: E402
from adapterkit.models.files import describe, load_weights  # noqa: E402
from adapterkit.models.parameters import count_parameters  # noqa: E402
from adapterkit.models.peft import load_peft, save_peft  # noqa: E402
from tolerance import assert_identity  # noqa: E402

TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4)
LORA = dict(type='LoRA', rank=4, alpha=8, targets=[
    'patch_embed.proj', r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])'],
    overrides=[dict(pattern=r'layers\.3\..+', rank=2, scale=0.5)])  # rank_pattern, alpha_pattern


def timm_swin(img_size=64, **kwargs):
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                             img_size=img_size, num_classes=0, **kwargs)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp('peft') / 'tiny_swin.pth')
    torch.save(timm_swin(**TINY).state_dict(), path)
    return path


def trained(model):
    """``model`` in float64 with every trainable tensor moved, as training would."""
    model.init_weights()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model.double().eval()


def peft_taps(peft_model, x):
    """The four taps of adapterkit's backbone read off timm's Swin inside a PeftModel:
    the outputs of the merges of stages 1-3 and of the last stage (NCHW)."""
    swin, taps = peft_model.base_model.model, {}
    modules = [swin.layers[1].downsample, swin.layers[2].downsample, swin.layers[3].downsample,
               swin.layers[3]]
    handles = [m.register_forward_hook(lambda _, __, out, i=i: taps.__setitem__(i, out))
               for i, m in enumerate(modules)]
    with torch.no_grad():
        peft_model(x)
    for handle in handles:
        handle.remove()
    return [taps[i].permute(0, 3, 1, 2) for i in range(4)]


def assert_taps_equal(model, peft_model, x):
    with torch.no_grad():
        ours = model.backbone.forward_features(x)
    theirs = peft_taps(peft_model, x)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_identity(a, b, f'tap {i}')


def from_pretrained(folder, pretrained, **kwargs):
    base = timm_swin(**kwargs)
    base.load_state_dict(torch.load(pretrained))
    return peft.PeftModel.from_pretrained(base.double().eval(), folder)


def test_a_lora_export_loads_into_peft_and_back_with_equal_features(tiny_model, pretrained,
                                                                    tmp_path):
    model = trained(tiny_model(LORA, pretrained=pretrained))
    folder = str(tmp_path / 'lora_peft')
    save_peft(model, folder, config_text='# the config')
    with open(osp.join(folder, 'adapter_config.json')) as f:
        config = json.load(f)
    assert (config['r'], config['lora_alpha']) == (4, 8.0)
    assert set(config['rank_pattern'].values()) == {2} and \
        set(config['alpha_pattern'].values()) == {1.0}  # scale 0.5 at rank 2
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    peft_model = from_pretrained(folder, pretrained, **TINY)
    assert_taps_equal(model, peft_model, x)
    with torch.no_grad():  # the adapter is in effect: without it the taps differ
        with peft_model.disable_adapter():
            plain = peft_taps(peft_model, x)
        assert (plain[-1] - model.backbone.forward_features(x)[-1]).abs().max() > 1e-2

    back = tiny_model(LORA, pretrained=pretrained).double().eval()  # other random adapters
    load_weights(back, folder)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key

    # a folder that peft itself saved holds no heads: its backbone adapter loads alone
    resaved = str(tmp_path / 'resaved')
    peft_model.save_pretrained(resaved)
    again = tiny_model(LORA, pretrained=pretrained).double().eval()
    with pytest.raises(CheckpointError, match='holds the backbone adapter only'):
        load_weights(again, resaved)
    load_peft(again, resaved, backbone_only=True)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(again.backbone.state_dict()[key], value), key


def test_swin_t_lora_r4_round_trip_keeps_features_and_trainable_count(tmp_path):
    cfg = load_config('configs/lora/lora_swin-t_r4_pascal-448.py')
    cfg.model.tasks = dict(semseg=dict())
    cfg.model.backbone.img_size = 224  # LoRA's tensors do not depend on the input size
    pretrained = str(tmp_path / 'swin_t.pth')
    torch.manual_seed(0)
    torch.save(timm_swin(224).state_dict(), pretrained)
    cfg.model.backbone.pretrained = pretrained
    model = trained(build_model(cfg))
    assert count_parameters(model)['backbone_adapter'] == 282_624
    folder = str(tmp_path / 'swin_t_peft')
    save_peft(model, folder)
    base = timm_swin(224)
    base.load_state_dict(torch.load(pretrained))
    peft_model = peft.PeftModel.from_pretrained(base.double().eval(), folder, is_trainable=True)
    assert peft_model.get_nb_trainable_parameters()[0] == 282_624
    assert_taps_equal(model, peft_model.eval(), torch.randn(1, 3, 224, 224, dtype=torch.float64))
    back = build_model(cfg).double().eval()
    load_weights(back, folder)
    assert count_parameters(back)['backbone_adapter'] == 282_624
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


def test_the_dora_plugin_exports_as_peft_dora(tiny_model, pretrained, tmp_path):
    dora = dict(type='DoRA', rank=2, alpha=4.0)
    model = trained(tiny_model(dora, pretrained=pretrained))
    folder = str(tmp_path / 'dora_peft')
    save_peft(model, folder)
    peft_model = from_pretrained(folder, pretrained, **TINY)
    assert peft_model.peft_config['default'].use_dora
    assert_taps_equal(model, peft_model, torch.randn(2, 3, 64, 64, dtype=torch.float64))
    back = tiny_model(dora, pretrained=pretrained).double().eval()
    load_weights(back, folder)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_strategy_peft_cannot_express_is_one_clear_line(tiny_model, pretrained, tmp_path):
    cases = [(dict(type='Adapter'), r'^Adapter: has no Hugging Face peft equivalent'),
             ([dict(type='LoRA'), dict(type='BitFit')],
              r'^a peft folder holds one adapter of the backbone; this model trains 2 '
              r'\(LoRA, BitFit\)'),
             (dict(type='LoRA', trainable='norms'), r'^LoRA: peft has no equivalent of `trainable`')]
    for adapter, message in cases:
        with pytest.raises(StrategyError, match=message):
            save_peft(tiny_model(adapter, pretrained=pretrained), str(tmp_path / 'x'))
    assert not osp.exists(tmp_path / 'x')  # refused before anything was written


def test_a_peft_folder_that_scales_otherwise_is_refused_naming_the_layer(
        tiny_model, pretrained, tmp_path):
    model = trained(tiny_model(LORA, pretrained=pretrained))
    folder = str(tmp_path / 'lora_peft')
    save_peft(model, folder)
    path = osp.join(folder, 'adapter_config.json')
    with open(path) as f:
        config = json.load(f)
    config['lora_alpha'] = 4  # scale 1 instead of 2
    with open(path, 'w') as f:
        json.dump(config, f)
    with pytest.raises(CheckpointError, match=r'lora_peft: scales layer layers\.0\.blocks\.0\.'
                                              r'attn\.proj by 1 \(lora_alpha / r\), the model '
                                              r'of the config by 2'):
        load_weights(tiny_model(LORA, pretrained=pretrained), folder)


def test_inspect_describes_peft_folders(tiny_model, pretrained, tmp_path):
    model = trained(tiny_model(dict(type='LoRA', rank=4), pretrained=pretrained))
    folder = str(tmp_path / 'lora_peft')
    save_peft(model, folder, config_text="model = dict(adapter=dict(type='LoRA', rank=4), "
                                         "tasks=['semseg', 'normals'])")
    fields = describe(folder)
    lora = sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)
    assert fields['kind'] == 'peft adapter folder' and fields['ranks'] == [4]
    assert fields['adapter_parameters'] == lora and fields['strategy'] == 'LoRA(rank=4)'
    assert fields['tasks'] == ['semseg', 'normals'] and len(fields['base_sha256']) == 64
    peft_model = from_pretrained(folder, pretrained, **TINY)
    peft_model.save_pretrained(str(tmp_path / 'resaved'))
    fields = describe(str(tmp_path / 'resaved'))
    assert fields['heads'].startswith('none') and fields['adapter_parameters'] == lora


def test_the_cli_exports_a_peft_folder_and_refuses_merge_with_it(tiny_model, pretrained,
                                                                 tmp_path, capsys):
    from adapterkit.cli import main
    config = tmp_path / 'tiny_lora.py'
    config.write_text(f"model = dict(type='MultiTaskModel', tasks=['semseg', 'normals'], "
                      f"adapter={LORA!r}, head=dict(type='HRNetHead'), backbone=dict("
                      f"type='SwinBackbone', img_size=64, pretrained={pretrained!r}, "
                      f"embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), "
                      f"window_size=4))\n")
    model = trained(tiny_model(LORA, pretrained=pretrained)).float()
    checkpoint = str(tmp_path / 'iter_4.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=4)), checkpoint)
    out = str(tmp_path / 'peft_out')
    assert main(['export', str(config), checkpoint, out, '--format', 'peft']) == 0
    assert f'wrote the peft adapter folder of {checkpoint} to {out}' in capsys.readouterr().out
    back = tiny_model(LORA, pretrained=pretrained)
    load_weights(back, out)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    assert main(['export', str(config), checkpoint, out, '--format', 'peft', '--merge']) == 2
    assert '--merge writes adapterkit files only' in capsys.readouterr().err
