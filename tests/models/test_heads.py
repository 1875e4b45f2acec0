import copy
import warnings

import adapterkit.registry  # noqa: F401  (installs the compat shims first)
import pytest
import torch
from tolerance import assert_identities, assert_identity

from adapterkit.models.backbones import SwinBackbone
from adapterkit.models.heads import HRNetHead
from adapterkit.registry import MODELS

SWIN_T_CHANNELS = [192, 384, 768, 768]
PASCAL_OUTPUTS = {'semseg': 21, 'human_parts': 7, 'sal': 1, 'normals': 3}


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope='module')
def tiny_backbone():
    torch.manual_seed(0)
    return SwinBackbone(img_size=64, depths=(1, 1, 1, 1), embed_dim=16,
                        num_heads=(1, 2, 2, 4), window_size=4)


def test_hrnet_head_shapes_and_keys():
    head = HRNetHead(in_channels=SWIN_T_CHANNELS, num_outputs=21)
    feats = [torch.randn(2, c, s, s) for c, s in zip(SWIN_T_CHANNELS, (8, 4, 2, 2))]
    assert head(feats).shape == (2, 21, 8, 8)
    assert {k.rsplit('.', 1)[0] for k in head.state_dict()} >= {
        'downsample.0', 'downsample.3', 'last_layer.0', 'last_layer.1', 'last_layer.3'}
    assert all(conv.bias is None for conv in head.downsample)


def test_hrnet_heads_of_pascal_match_the_paper():
    heads = {task: MODELS.build(dict(type='HRNetHead', in_channels=SWIN_T_CHANNELS,
                                     num_outputs=n))
             for task, n in PASCAL_OUTPUTS.items()}
    assert all(count(h.downsample) == 183_168 for h in heads.values())
    assert sum(count(h) for h in heads.values()) == 1_946_624


def test_mmseg_segformer_head_as_task_head(tiny_backbone):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        head = MODELS.build(dict(type='MMSegHead',
                                 decode_head=dict(type='SegformerHead', channels=32),
                                 in_channels=tiny_backbone.out_channels, num_outputs=1))
    assert not [w for w in caught if 'threshold' in str(w.message)]

    x = torch.randn(2, 3, 64, 64)
    logits = head(tiny_backbone.forward_features(x))
    assert logits.shape == (2, 1, 8, 8)  # resolution of the first tap

    logits.square().mean().backward()
    params = list(head.parameters())
    assert params and all(p.requires_grad for p in params)
    assert all(p.grad is not None for p in params)


def test_mmseg_head_with_one_input_map(tiny_backbone):
    head = MODELS.build(dict(type='MMSegHead',
                             decode_head=dict(type='FCNHead', channels=16, num_convs=1,
                                              in_index=3),
                             in_channels=tiny_backbone.out_channels, num_outputs=7))
    with torch.no_grad():
        logits = head.eval()(tiny_backbone.forward_features(torch.randn(1, 3, 64, 64)))
    assert logits.shape == (1, 7, 2, 2)


def paper_order(head, feats):
    """The head as the paper writes it: upsample, concatenate, 1x1 conv, BN, ReLU, 1x1 conv,
    each by its torch module."""
    maps = [conv(f) for conv, f in zip(head.downsample, feats)]
    size = maps[0].shape[-2:]
    maps = [maps[0]] + [torch.nn.functional.interpolate(
        m, size=size, mode='bilinear', align_corners=False) for m in maps[1:]]
    return head.last_layer(torch.cat(maps, dim=1))


@pytest.mark.parametrize('train', [True, False])
def test_hrnet_head_equals_the_paper_order(train):
    """The head maps each resolution to the hidden width before upsampling (linear maps
    commute) and, in training, recomputes its activated map in backward; outputs and
    gradients must equal the paper's order. In float64: in float32 the two orders round
    differently, and a ReLU input near zero may flip."""
    torch.manual_seed(0)
    head = HRNetHead(in_channels=SWIN_T_CHANNELS, num_outputs=7).train(train).double()
    twin = copy.deepcopy(head)
    feats = [torch.randn(2, c, s, s, requires_grad=True, dtype=torch.float64)
             for c, s in zip(SWIN_T_CHANNELS, (16, 8, 4, 4))]
    weight = torch.randn(2, 7, 16, 16, dtype=torch.float64)
    got = head(feats)
    got_grads = torch.autograd.grad((got * weight).sum(), feats + list(head.parameters()))
    want = paper_order(twin, feats)
    want_grads = torch.autograd.grad((want * weight).sum(), feats + list(twin.parameters()))
    assert_identity(got, want, 'output')
    assert_identities(got_grads, want_grads, 'gradient')
    for mine, torchs in zip(head.buffers(), twin.buffers()):  # BN's running statistics
        if mine.is_floating_point():
            assert_identity(mine, torchs, 'running statistic')
        else:
            assert torch.equal(mine, torchs)
