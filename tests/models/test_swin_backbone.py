import copy
import re

import adapterkit.registry  # noqa: F401  (installs the compat shims first)
import pytest
import timm
import torch
from safetensors.torch import save_file
from tolerance import assert_identities, assert_identity

from adapterkit.models.backbones import SwinBackbone
from adapterkit.registry import MODELS

TINY = dict(depths=(1, 1, 1, 1), embed_dim=16, num_heads=(1, 2, 2, 4), window_size=4)
TINY_SIZE = 64


@pytest.fixture(scope='module')
def swin_tiny_448():
    torch.manual_seed(0)
    return SwinBackbone(img_size=448).eval()


@pytest.fixture(scope='module')
def source():
    """A tiny timm Swin with a classifier, all weights randomised so copies are checkable."""
    torch.manual_seed(0)
    model = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                              img_size=TINY_SIZE, num_classes=5, **TINY).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_()
    return model


def backbone_part(state_dict):
    return {k: v for k, v in state_dict.items() if not k.startswith(('head.', 'norm.'))}


def to_microsoft_layout(model):
    """The state dict as Microsoft's Swin repo saves it: merge at the END of stage i
    (``layers.{i}.downsample``), classifier at ``head.*``, index/mask buffers included,
    all under 'model'. The merge weights need no reordering: Microsoft concatenates the
    2x2 neighbours as [x0, x1, x2, x3], which is timm's order (see the test below)."""
    out = {}
    for key, value in model.state_dict().items():
        key = re.sub(r'^layers\.(\d+)\.downsample\.',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', key)
        out[key.replace('head.fc.', 'head.')] = value
    for name, module in model.named_modules():
        for buffer in ('relative_position_index', 'attn_mask'):
            if getattr(module, buffer, None) is not None:
                out[f'{name}.{buffer}'] = getattr(module, buffer)
    return {'model': out}


def tiny_backbone(pretrained=None):
    return SwinBackbone(img_size=TINY_SIZE, pretrained=pretrained, **TINY).eval()


def assert_matches_source(backbone, source):
    expected = backbone_part(source.state_dict())
    loaded = backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key

    for stage in source.layers:  # the same attention kernel as the backbone's default
        for block in stage.blocks:
            block.attn.fused_attn = True
    # in float64, to float64 rounding (tests/tolerance.py)
    backbone, source = copy.deepcopy(backbone).double(), copy.deepcopy(source).double()
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE, dtype=torch.float64)
    with torch.no_grad():
        taps = backbone.forward_features(x)
        stages = source.forward_intermediates(x, intermediates_only=True)
        # after stage i's merge = timm's merge of stage i+1 applied to stage i's output
        expected_taps = [source.layers[i + 1].downsample(stages[i].permute(0, 2, 3, 1))
                         .permute(0, 3, 1, 2) for i in range(3)] + [stages[3]]
    for tap, want in zip(taps, expected_taps):
        assert_identity(tap, want, 'tap')


def test_taps_of_swin_tiny_at_448(swin_tiny_448):
    with torch.no_grad():
        taps = swin_tiny_448.forward_features(torch.randn(1, 3, 448, 448))
    assert [tuple(t.shape) for t in taps] == [
        (1, 192, 56, 56), (1, 384, 28, 28), (1, 768, 14, 14), (1, 768, 14, 14)]
    # NCHW views of the NHWC tokens: channels-last memory, no copy
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in taps)
    assert swin_tiny_448.out_channels == [192, 384, 768, 768]
    assert swin_tiny_448.out_strides == [8, 16, 32, 32]


def test_parameter_count_and_timm_names(swin_tiny_448):
    assert sum(p.numel() for p in swin_tiny_448.parameters()) == 27_517_818
    modules = dict(swin_tiny_448.named_modules())
    assert 'layers.0.blocks.0.attn.qkv' in modules
    assert 'layers.1.downsample.reduction' in modules
    assert 'norm' not in modules and 'head' not in modules
    assert all(k.startswith(('patch_embed.', 'layers.')) for k in swin_tiny_448.state_dict())


def test_every_task_gets_the_same_list():
    backbone = MODELS.build(dict(type='SwinBackbone', img_size=TINY_SIZE, **TINY))
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, TINY_SIZE, TINY_SIZE), ['semseg', 'normals', 'sal'])
    assert list(out) == ['semseg', 'normals', 'sal']
    assert out['semseg'] is out['normals'] is out['sal']
    assert [t.shape[1] for t in out['semseg']] == [32, 64, 128, 128]


def test_microsoft_merge_order_equals_timm():
    # Microsoft's PatchMerging: cat of x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]
    torch.manual_seed(0)
    merge = timm.models.swin_transformer.PatchMerging(dim=8).double().eval()
    x = torch.randn(2, 6, 6, 8, dtype=torch.float64)
    microsoft = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2],
                           x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    with torch.no_grad():
        assert_identity(merge(x), merge.reduction(merge.norm(microsoft)))


def test_load_microsoft_layout(source, tmp_path):
    path = tmp_path / 'swin_ms.pth'
    checkpoint = to_microsoft_layout(source)
    assert 'layers.0.downsample.reduction.weight' in checkpoint['model']
    torch.save(checkpoint, path)
    backbone = tiny_backbone(pretrained=str(path))
    backbone.init_weights()
    assert_matches_source(backbone, source)


def test_load_timm_layout_pth_and_safetensors(source, tmp_path):
    pth = tmp_path / 'swin_timm.pth'
    torch.save({'state_dict': source.state_dict()}, pth)
    backbone = tiny_backbone(pretrained=str(pth))
    backbone.init_weights()
    assert_matches_source(backbone, source)

    # a whole-model checkpoint: backbone under 'backbone.', next to a head
    st = tmp_path / 'swin_timm.safetensors'
    tensors = {f'backbone.{k}': v.contiguous() for k, v in source.state_dict().items()}
    tensors['heads.semseg.weight'] = torch.zeros(3)
    save_file(tensors, str(st))
    backbone = tiny_backbone()
    backbone.load_pretrained(str(st))
    assert_matches_source(backbone, source)


def test_checkpoint_that_does_not_fit_is_one_line(source, tmp_path):
    state_dict = dict(source.state_dict())
    state_dict['layers.0.blocks.0.attn.bogus'] = torch.zeros(1)
    del state_dict['layers.2.blocks.0.mlp.fc1.weight']
    path = tmp_path / 'bad.pth'
    torch.save(state_dict, path)
    with pytest.raises(ValueError) as err:
        tiny_backbone().load_pretrained(str(path))
    message = str(err.value)
    assert '\n' not in message
    assert str(path) in message
    assert 'layers.0.blocks.0.attn.bogus' in message
    assert 'layers.2.blocks.0.mlp.fc1.weight' in message


def test_checkpoint_of_a_deeper_model_is_reported_not_crashed(tmp_path):
    deeper = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                               img_size=TINY_SIZE, num_classes=0,
                               **{**TINY, 'depths': (1, 1, 2, 1)})
    path = tmp_path / 'deeper.pth'
    torch.save(deeper.state_dict(), path)
    with pytest.raises(ValueError, match=r'unexpected keys: .*layers\.2\.blocks\.1\.'):
        tiny_backbone().load_pretrained(str(path))


def test_missing_file_names_it(tmp_path):
    path = tmp_path / 'nowhere.pth'
    backbone = tiny_backbone(pretrained=str(path))
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        backbone.init_weights()


@pytest.mark.parametrize('size', [8, 7])  # 7: timm pads odd sizes
def test_merge_redoing_its_norm_equals_timm(size):
    from adapterkit.models.backbones.swin import _merge
    torch.manual_seed(0)
    merge = timm.models.swin_transformer.PatchMerging(dim=8).double()
    x = torch.randn(2, size, size, 8, requires_grad=True, dtype=torch.float64)
    results = []
    for forward in (merge, lambda x: _merge(merge, x)):
        out = forward(x)
        inputs = [x, merge.norm.weight, merge.reduction.weight]
        results.append((out, torch.autograd.grad(out.square().sum(), inputs)))
    (want, want_grads), (got, grads) = results
    assert_identity(got, want)
    assert_identities(grads, want_grads, 'gradient')
