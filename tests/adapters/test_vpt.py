"""VPT on Swin against its formula written out here: every window of an image as the explicit
sequence [prompts, window tokens] (bias and shift mask zero for the prompts), prompt outputs
averaged over the image's own windows, plain loops over images, blocks and stages; its
counts at Swin-T 448 and its refusals.

The model and the oracle run in float64, where they differ by rounding alone
(tests/tolerance.py: 3.7e-9 of the outputs' scale, while a prompt read by the wrong window
or averaged over the wrong windows moves them by more than 1e-3 of it); the model also in
float32, within float32 rounding of the float64 oracle."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from timm.models.swin_transformer import window_partition, window_reverse

import adapterkit  # noqa: F401  (registers everything)
from adapterkit import count_parameters
from adapterkit.adapters.vpt import VPTBlock
from adapterkit.errors import StrategyError
from adapterkit.registry import ADAPTERS, MODELS
from tolerance import assert_identity, assert_within, gamma

MINI = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
            num_heads=(1, 2, 2, 4), window_size=4)
TASKS = ('semseg', 'normals')


def mini_model(adapter, tasks=TASKS, **backbone):
    init_default_scope('adapterkit')
    torch.manual_seed(0)
    model = MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                              backbone=dict(MINI, **backbone), head=dict(type='HRNetHead')))
    with torch.no_grad():  # timm starts the bias tables near zero: make them count
        for name, param in model.backbone.named_parameters():
            if name.endswith('relative_position_bias_table'):
                param.normal_()
    return model.double().eval()


# ---------------------------------------------------------------- the formula, directly
def attention_with_prompts(block, z, prompts):
    """(image tokens after the attention's proj, prompts after it): one window at a time."""
    attn, (window, _), shift = block.attn, block.window_size, block.shift_size[0]
    batch, height, width, channels = z.shape
    heads, tokens, count = attn.num_heads, window * window, prompts.shape[1]
    image = block.norm1(z)
    image = torch.roll(image, (-shift, -shift), (1, 2)) if shift else image
    windows = window_partition(image, (window, window)).reshape(batch, -1, tokens, channels)
    bias = attn.relative_position_bias_table[attn.relative_position_index.reshape(-1)]
    bias = bias.reshape(tokens, tokens, heads).permute(2, 0, 1)
    out_windows = torch.empty_like(windows)
    out_prompts = torch.zeros_like(prompts)
    for b in range(batch):
        for w in range(windows.shape[1]):
            sequence = torch.cat([block.norm1(prompts[b]), windows[b, w]])
            q, k, v = (sequence @ attn.qkv.weight.T + attn.qkv.bias).reshape(
                len(sequence), 3, heads, -1).permute(1, 2, 0, 3)
            padded = torch.zeros(heads, len(sequence), len(sequence), dtype=z.dtype)
            padded[:, count:, count:] = bias
            if block.attn_mask is not None:
                padded[:, count:, count:] += block.attn_mask[w]
            logits = (q * attn.scale) @ k.transpose(-2, -1) + padded
            out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(len(sequence), channels)
            out = out @ attn.proj.weight.T + attn.proj.bias
            out_windows[b, w] = out[count:]
            out_prompts[b] += out[:count] / windows.shape[1]  # the mean over b's windows
    image = window_reverse(out_windows.reshape(-1, window, window, channels), (window, window),
                           height, width)
    return (torch.roll(image, (shift, shift), (1, 2)) if shift else image), out_prompts


def mlp(block, x):
    return block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))


def vpt_taps(backbone, images, deep):
    """The four taps of a VPT backbone: blocks and stages in plain loops."""
    z, prompts, taps = backbone.patch_embed(images), None, []
    for i, stage in enumerate(backbone.layers):
        if i:
            merge = stage.downsample
            z = merge(z)
            taps.append(z)
            if not deep:  # four copies of a prompt make its 2x2 neighbourhood
                prompts = merge.reduction(merge.norm(torch.cat([prompts] * 4, -1)))
        for j, block in enumerate(stage.blocks):
            if deep or (i, j) == (0, 0):
                prompts = block.vpt_prompt.tokens.expand(len(images), -1, -1)
            attended, attended_prompts = attention_with_prompts(block, z, prompts)
            z, prompts = z + attended, prompts + attended_prompts
            z, prompts = z + mlp(block, z), prompts + mlp(block, prompts)
    return taps + [z]


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize('deep', [True, False], ids=['deep', 'shallow'])
def test_every_tap_is_the_formula_written_window_by_window(deep):
    model = mini_model(dict(type='VPT', num_tokens=3, deep=deep))
    backbone = model.backbone
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    assert any(block.attn_mask is not None for block in backbone.layers[0].blocks)
    with torch.no_grad():
        got = backbone(images, ['semseg'])['semseg']
        want = vpt_taps(backbone, images, deep)
    for tap, (ours, theirs) in enumerate(zip(got, want)):
        assert_identity(ours, theirs.permute(0, 3, 1, 2), f'tap {tap}')
    with torch.no_grad():
        got = backbone.float()(images.float(), ['semseg'])['semseg']
    # in float32: gamma(n) max|tap|, n = 2^13 > the ~7,200 terms summed along a path: per
    # block 11C + 48 and 3 prompts, per merge 12C, widths C of 16-128 (docs/testing.md)
    allowed = gamma(2 ** 13, torch.float32)
    for tap, (ours, theirs) in enumerate(zip(got, want)):
        assert_within(ours, theirs.permute(0, 3, 1, 2), allowed * theirs.abs().max(),
                      f'float32 tap {tap}')


def test_an_image_reads_its_own_prompts_whatever_else_is_in_the_batch():
    """The authors' code mixes the images of a batch (see adapters/vpt.py); here an image's
    outputs do not depend on the other images of its batch."""
    model = mini_model(dict(type='VPT', num_tokens=3, deep=False))
    images = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        together = model(images)
        alone = [model(images[i:i + 1]) for i in range(3)]
    for task in TASKS:
        for i in range(3):
            assert_identity(together[task][i:i + 1], alone[i][task], f'{task} image {i}')


@pytest.mark.parametrize('deep, per_copy', [(True, 4_416), (False, 96)],
                         ids=['deep', 'shallow'])
def test_swin_t_at_448_trains_the_prompts_of_the_formula(deep, per_copy):
    init_default_scope('adapterkit')
    with torch.device('meta'):
        for adapter, copies in ((dict(type='VPT', num_tokens=50, deep=deep), 1),
                                (dict(type='PerTask', strategy=dict(
                                    type='VPT', num_tokens=50, deep=deep)), 4)):
            model = MODELS.build(dict(
                type='MultiTaskModel', tasks=['semseg', 'human_parts', 'sal', 'normals'],
                adapter=adapter, backbone=dict(type='SwinBackbone', img_size=448),
                head=dict(type='HRNetHead')))
            counts = count_parameters(model)
            assert counts['backbone_adapter'] == copies * per_copy * 50
            assert counts['trainable'] == 1_946_624 + copies * per_copy * 50
    blocks = [b for stage in model.backbone.layers for b in stage.blocks]
    assert all(isinstance(b, VPTBlock) for b in blocks)
    assert sum(hasattr(b, 'vpt_prompt') for b in blocks) == (12 if deep else 1)


def test_prompts_start_within_the_xavier_bound_of_the_patch_embedding():
    model = mini_model(dict(type='VPT', num_tokens=40, deep=True))
    bound = math.sqrt(6 / (3 * 4 * 4 + 16))  # fan of the 4x4x3 kernel, 16 channels
    tokens = [b.vpt_prompt.tokens for stage in model.backbone.layers for b in stage.blocks]
    assert all(t.abs().max() <= bound and t.abs().max() > 0.8 * bound for t in tokens)
    zeros = mini_model(dict(type='VPT', num_tokens=4, deep=False, init='zeros'))
    assert not zeros.backbone.layers[0].blocks[0].vpt_prompt.tokens.any()


def test_prompt_dropout_and_drop_path_train_and_reach_every_prompt():
    model = mini_model(dict(type='VPT', num_tokens=3, deep=True, dropout=0.2),
                       drop_path_rate=0.2).float().train()
    out = model(torch.randn(4, 3, 64, 64))  # 4 images: some branch of every block is kept
    sum(o.square().mean() for o in out.values()).backward()
    grads = [b.vpt_prompt.tokens.grad for stage in model.backbone.layers
             for b in stage.blocks]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize('options, message', [
    (dict(num_tokens=0), 'VPT: num_tokens must be a positive integer, got 0'),
    (dict(dropout=1.0), 'VPT: dropout must be a number in [0, 1), got 1.0'),
    (dict(init='normal'), "VPT: init must be one of ('uniform', 'zeros'), got 'normal'"),
])
def test_option_mistakes_are_one_clear_error(options, message):
    with pytest.raises(StrategyError) as err:
        ADAPTERS.build(dict(type='VPT', **options))
    assert str(err.value) == message


def test_an_adapter_on_the_attention_cannot_be_combined_with_vpt():
    with pytest.raises(StrategyError, match=r'^VPT: layers\.0\.blocks\.0\.attn has forward '
                                            r'hooks \(an Adapter\?\)'):
        mini_model([dict(type='Adapter'), dict(type='VPT', num_tokens=2)])
    model = mini_model([dict(type='VPT', num_tokens=2), dict(type='Adapter')])
    with pytest.raises(StrategyError, match='VPT: VPTBlock.attn has forward hooks'):
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
