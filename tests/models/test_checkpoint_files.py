"""Checkpoint arguments read by content, loaded strictly, and described: files on disk of
every kind (runner checkpoint, adapter-only, merged, MTLoRA reference, Swin weights)."""
import os
import re
import sys
import types

import pytest
import timm
import torch
from mmengine.runner.checkpoint import load_checkpoint
from safetensors.torch import save_file
from tolerance import assert_identity

from adapterkit.cli import main
from adapterkit.errors import CheckpointError
from adapterkit.models.checkpoint import file_sha256, save_adapter, save_merged
from adapterkit.models.files import describe, load_weights

TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4)
LORA = dict(type='LoRA', rank=2)


def timm_swin(seed):
    torch.manual_seed(seed)
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, img_size=64,
                             num_classes=0, **TINY)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """Two "pretrained" tiny Swins in timm's layout: the one adapters were trained on, and
    another."""
    folder = tmp_path_factory.mktemp('pretrained')
    paths = [str(folder / f'swin_{seed}.pth') for seed in (0, 1)]
    for seed, path in enumerate(paths):
        torch.save(timm_swin(seed).state_dict(), path)
    return paths


def trained(tiny_model, adapter, pretrained, seed=3):
    model = tiny_model(adapter, pretrained=pretrained)
    model.init_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=gen))
    return model.eval()


def assert_same_state(model, other):
    ours, theirs = model.state_dict(), other.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def one_line(err) -> str:
    message = str(err.value)
    assert '\n' not in message
    return message


# ------------------------------------------------------------------ content, not suffix
def test_a_pth_that_is_safetensors_and_a_safetensors_that_is_torch_both_load(tmp_path,
                                                                           tiny_model):
    source = timm_swin(0)
    fake_pth, fake_st = str(tmp_path / 'weights.pth'), str(tmp_path / 'weights.safetensors')
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, fake_pth)
    torch.save({'model': source.state_dict()}, fake_st)
    for path in (fake_pth, fake_st):
        backbone = tiny_model(None, pretrained=path).backbone
        backbone.load_pretrained(path)
        for name, value in backbone.state_dict().items():
            if name in source.state_dict():
                assert torch.equal(value, source.state_dict()[name]), (path, name)


def test_a_safetensors_file_whose_header_length_starts_like_a_pickle_is_safetensors(
        tmp_path):
    # the header length is little-endian: one of 256 lengths starts with 0x80, the byte
    # a pickle (torch's legacy format) starts with
    from adapterkit.layouts import file_format
    for pad in range(256):
        path = str(tmp_path / 'a.safetensors')
        save_file({'w': torch.zeros(1)}, path, metadata={'pad': 'x' * pad})
        with open(path, 'rb') as f:
            if f.read(1) == b'\x80':
                break
    else:
        pytest.fail('no padding gave a header length that starts with 0x80')
    assert file_format(path) == 'safetensors'


def test_a_file_of_no_known_format_or_layout_is_one_line_naming_the_accepted(tmp_path,
                                                                            tiny_model):
    text = tmp_path / 'notes.pth'
    text.write_text('not weights')
    backbone = tiny_model(None).backbone
    with pytest.raises(CheckpointError) as err:
        backbone.load_pretrained(str(text))
    message = one_line(err)
    assert 'neither a torch nor a safetensors file' in message
    assert "Microsoft's or timm's layout" in message and 'peft adapter folder' in message

    torch.save({'weights': {'fc.weight': torch.zeros(2, 2)}}, tmp_path / 'other.bin')
    with pytest.raises(CheckpointError, match=r'other\.bin: not Swin weights: no known layout; '
                                              r"model.backbone.pretrained takes Swin weights"):
        backbone.load_pretrained(str(tmp_path / 'other.bin'))


def test_an_adapter_file_given_as_pretrained_weights_says_what_it_is(tmp_path, tiny_model,
                                                                      pretrained):
    path = str(tmp_path / 'adapter.pth')  # the suffix says nothing
    save_adapter(trained(tiny_model, LORA, pretrained[0]), path.replace('.pth', '.safetensors'))
    os.rename(path.replace('.pth', '.safetensors'), path)
    with pytest.raises(CheckpointError, match='an adapter-only file holds no backbone weights'):
        tiny_model(None).backbone.load_pretrained(path)


# ------------------------------------------------------------------ strict loading
def test_a_checkpoint_of_another_model_is_refused_naming_the_keys(tmp_path, tiny_model,
                                                                 pretrained):
    lora = trained(tiny_model, LORA, pretrained[0])
    path = str(tmp_path / 'iter_4.pth')
    torch.save(dict(state_dict=lora.state_dict(), meta=dict(iter=4)), path)
    full = tiny_model(None, pretrained=pretrained[0])
    with pytest.raises(CheckpointError) as err:
        load_weights(full, path)
    assert re.search(r'iter_4\.pth: does not fit the model of the config: 32 unexpected keys: '
                     r'backbone\.layers\.0\.blocks\.0\.attn\.proj\.lora_A', one_line(err))
    # mmengine's own loading (the Runner's load_from and resume) is as strict
    with pytest.raises(CheckpointError, match='32 unexpected keys'):
        load_checkpoint(full, path, map_location='cpu')
    # the other way round: a Full checkpoint into a LoRA model misses the factors
    torch.save(dict(state_dict=full.state_dict()), path)
    with pytest.raises(CheckpointError, match=r'32 missing keys: backbone\..*lora_A'):
        load_checkpoint(lora, path, map_location='cpu')


def test_load_from_an_adapter_file_of_another_rank_is_refused(tmp_path, tiny_model, pretrained):
    path = str(tmp_path / 'rank2.safetensors')
    save_adapter(trained(tiny_model, LORA, pretrained[0]), path)
    rank4 = tiny_model(dict(type='LoRA', rank=4), pretrained=pretrained[0])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(rank4, path, map_location='cpu')  # what load_from does
    assert 'rank2.safetensors: does not fit the adapter-only part of the model of the config: ' \
           '32 shape mismatches (file vs model): backbone.layers.0.blocks.0.attn.proj.lora_A ' \
           '(2, 16) vs (4, 16)' in one_line(err)


def test_load_from_an_adapter_file_puts_the_pretrained_backbone_under_it(tmp_path, tiny_model,
                                                                         pretrained):
    model = trained(tiny_model, LORA, pretrained[0])
    path = str(tmp_path / 'adapter.safetensors')
    save_adapter(model, path)
    fresh = tiny_model(LORA, pretrained=pretrained[0])  # random backbone, not initialised
    load_checkpoint(fresh, path, map_location='cpu')
    assert_same_state(fresh, model)


def test_an_adapter_on_other_backbone_weights_is_refused_unless_allowed(tmp_path, tiny_model,
                                                                       pretrained):
    model = trained(tiny_model, LORA, pretrained[0])
    path = str(tmp_path / 'adapter.safetensors')
    save_adapter(model, path)
    other = tiny_model(LORA, pretrained=pretrained[1])
    with pytest.raises(CheckpointError) as err:
        load_weights(other, path)
    line = one_line(err)
    sha, other_sha = file_sha256(pretrained[0]), file_sha256(pretrained[1])
    assert (f'trained on other backbone weights (swin_0.pth, sha256 {sha[:12]}) than '
            f'model.backbone.pretrained {pretrained[1]} (sha256 {other_sha[:12]})') in line
    assert line.endswith('or pass --allow-other-backbone (allow_other_backbone=True)')
    load_weights(other, path, allow_other_backbone=True)
    assert torch.equal(other.backbone.patch_embed.proj.weight,
                       timm_swin(1).patch_embed.proj.weight)


def test_a_file_is_hashed_once_per_path_mtime_and_size(tmp_path, monkeypatch):
    import adapterkit.models.checkpoint as checkpoint
    path = tmp_path / 'weights.bin'
    path.write_bytes(b'a' * 1000)
    opened = []
    real_open = open
    monkeypatch.setattr('builtins.open', lambda f, *a, **k: opened.append(f) or real_open(
        f, *a, **k))
    first = checkpoint.file_sha256(str(path))
    assert checkpoint.file_sha256(str(path)) == first and len(opened) == 1
    path.write_bytes(b'b' * 1001)  # another size (and mtime): hashed again
    assert checkpoint.file_sha256(str(path)) != first and len(opened) == 2


def test_a_merged_export_loads_into_a_fresh_model_of_its_config(tmp_path, tiny_model,
                                                                pretrained):
    model = trained(tiny_model, LORA, pretrained[0]).double()  # an identity: in float64
    path = str(tmp_path / 'merged.safetensors')
    save_merged(model, path)
    fresh = tiny_model(LORA).double().eval()  # no pretrained file needed: the export holds all
    load_weights(fresh, path)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        want, got = model(x), fresh(x)
    assert sorted(got) == sorted(want)
    for task in want:  # merged weights W + B A against the unmerged sum, to rounding
        assert_identity(got[task], want[task], task)


# ------------------------------------------------------------------ MTLoRA reference
def save_like_the_mtlora_reference(path, state):
    """torch.save of a dict holding a yacs CfgNode, as the reference code saves."""
    yacs, config = types.ModuleType('yacs'), types.ModuleType('yacs.config')

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    config.CfgNode, yacs.config = CfgNode, config
    sys.modules.update({'yacs': yacs, 'yacs.config': config})
    try:
        torch.save(dict(model=state, epoch=299, config=CfgNode(
            MODEL=CfgNode(MTLORA=CfgNode(R=[4, 4, 4, 4])))), path)
    finally:
        del sys.modules['yacs'], sys.modules['yacs.config']


MTLORA = dict(type='MTLoRA', rank=4, task_rank=4)


def test_an_mtlora_reference_checkpoint_says_what_it_is_and_loads_into_mtlora(
        tmp_path, tiny_model):
    model = tiny_model(MTLORA)
    state = {re.sub(r'\.(attn\.(qkv|proj)|mlp\.fc[12])\.(weight|bias)$', r'.\1.linear.\3', k): v
             for k, v in model.state_dict().items()}  # the reference wraps frozen layers
    state = {re.sub(r'^heads\.(\w+)\.last_layer\.', r'decoders.decoders.\1.last_layer.', k): v
             for k, v in state.items()}
    state = {re.sub(r'^backbone\.layers\.(\d)\.downsample\.',
                    lambda m: f'backbone.layers.{int(m.group(1)) - 1}.downsample.', k): v
             for k, v in state.items()}
    path = str(tmp_path / 'mtlora_ref.pth')
    save_like_the_mtlora_reference(path, state)
    with pytest.raises(CheckpointError) as err:
        load_weights(tiny_model(LORA), path)
    line = one_line(err)
    assert 'an MTLoRA reference checkpoint (scale-lab/MTLoRA) does not fit' in line
    assert 'adapterkit convert-mtlora CKPT OUT --config CONFIG' in line
    assert 'Unsupported global' not in line
    fresh = tiny_model(MTLORA)
    load_weights(fresh, path)  # converted in memory, nothing of yacs run
    assert_same_state(fresh, model)
    assert describe(path)['kind'].startswith('MTLoRA reference checkpoint')


# ------------------------------------------------------------------ inspect
def inspect(path, capsys):
    """``adapterkit inspect PATH``'s fields, ``{name: value text}``, and its config text."""
    assert main(['inspect', path]) == 0
    out = capsys.readouterr().out
    fields, _, config = out.partition('  config:\n')
    lines = [line.split(None, 1) for line in fields.splitlines()[1:]]
    return {name: value for name, value in lines}, config


def test_inspect_says_what_every_kind_of_file_holds(tmp_path, tiny_model, pretrained, capsys):
    model = trained(tiny_model, LORA, pretrained[0])
    config = "model = dict(adapter=dict(type='LoRA', rank=2), tasks=['semseg', 'normals'])"
    adapter, merged = str(tmp_path / 'a.safetensors'), str(tmp_path / 'm.safetensors')
    save_adapter(model, adapter, config)
    save_merged(model, merged, config)
    runner = str(tmp_path / 'iter_4.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=4, epoch=0, cfg=config)),
               runner)

    fields, text = inspect(adapter, capsys)
    lora_values = sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)
    assert fields == dict(kind='adapter-only file', strategy='LoRA(rank=2)',
                          tasks="['semseg', 'normals']", ranks='[2]',
                          backbone_values=str(lora_values), head_values=fields['head_values'],
                          base_sha256=file_sha256(pretrained[0]), base_file='swin_0.pth')
    assert int(fields['head_values']) == sum(v.numel() for k, v in model.state_dict().items()
                                             if k.startswith('heads.'))
    assert text.strip() == config
    fields, text = inspect(merged, capsys)
    assert fields['kind'] == 'merged export' and 'ranks' not in fields and text.strip() == config
    fields, _ = inspect(runner, capsys)
    assert fields['kind'] == 'runner checkpoint' and fields['iteration'] == '4'
    assert fields['strategy'] == 'LoRA(rank=2)'
    fields, _ = inspect(pretrained[0], capsys)
    assert fields['kind'] == 'Swin weights (timm layout)'
    assert fields['depths'] == '[1, 1, 1, 1]' and fields['embed_dim'] == '16'
    microsoft = str(tmp_path / 'microsoft.pth')  # a stage's merge at its end, under 'model'
    torch.save(dict(model={re.sub(r'^layers\.(\d)\.downsample\.', lambda m: f'layers.'
                                  f'{int(m.group(1)) - 1}.downsample.', k): v
                           for k, v in timm_swin(0).state_dict().items()}), microsoft)
    fields, _ = inspect(microsoft, capsys)
    assert fields['kind'] == "Swin weights (microsoft layout)" and fields['tensors'] == str(
        len(timm_swin(0).state_dict()))

    torch.save({'x': torch.zeros(1)}, tmp_path / 'x.pth')
    with pytest.raises(CheckpointError, match=r'x\.pth: no known layout; adapterkit reads'):
        describe(str(tmp_path / 'x.pth'))
