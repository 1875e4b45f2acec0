"""The backbone's task streams as a plugin meets them (layers/streams.py): a strategy written
here, with public names only, carries per-sample tokens from the patch embedding through
every block and stage merge, gives the tasks streams born in each stage's last block, and
is checked against a plain loop; gradient checkpointing carries the whole state. Both are
identities, checked in float64 to float64 rounding (tests/tolerance.py)."""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from timm.models.swin_transformer import SwinTransformerBlock
from torch import nn

import adapterkit  # noqa: F401  (registers everything)
from adapterkit.adapters import AdapterStrategy
from adapterkit.errors import StrategyError
from adapterkit.layers.streams import StreamPolicy, Streams
from adapterkit.registry import MODELS
from tolerance import assert_identities, assert_identity

TASKS = ('semseg', 'normals')
SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(1, 2, 1, 1),
            num_heads=(1, 2, 2, 4), window_size=4)


class PromptedBlock(SwinTransformerBlock):
    """timm's block, then: every token reads the mean of the prompts, the prompts read the
    mean of the tokens, and the last block of a stage answers one stream per task (the
    shared stream plus that task's prompt)."""

    takes_streams = True

    def forward(self, state: Streams) -> Streams:
        prompts = state.tokens['prompts']  # (B, T, C)
        x = super().forward(state.shared) + prompts.mean(1)[:, None, None]
        prompts = prompts + x.mean((1, 2))[:, None]
        tasks = None
        if self.last:  # (T*B, H, W, C), task-major
            tasks = (x[None] + prompts.transpose(0, 1)[:, :, None, None]).flatten(0, 1)
        return Streams(x, tasks, {'prompts': prompts})


def start_prompts(backbone, x):
    return backbone.toy_prompts.expand(len(x), -1, -1)


def merge_prompts(merge, prompts):
    return merge.toy_up(prompts)


class Prompted(AdapterStrategy):
    """Prompts per task carried by every block, mapped by a linear map at every merge."""

    prefixes = ('toy_',)

    def apply(self, model):
        backbone = model.backbone
        policy = backbone.streams.with_tasks(list(model.tasks), owner='Prompted') \
            .with_token('prompts', merge=merge_prompts, start=start_prompts, owner='Prompted')
        backbone.toy_prompts = nn.Parameter(torch.randn(len(model.tasks), 16))
        for i, stage in enumerate(backbone.layers):
            if i:
                stage.downsample.toy_up = nn.Linear(stage.downsample.reduction.in_features // 4,
                                                    stage.downsample.reduction.out_features)
            for j, block in enumerate(stage.blocks):
                block.__class__ = PromptedBlock
                block.last = j == len(stage.blocks) - 1
        backbone.streams = policy
        self.mark_trainable(backbone, [n for n, _ in backbone.named_parameters()
                                       if 'toy_' in n])


def build(adapter):
    init_default_scope('adapterkit')
    torch.manual_seed(0)
    return MODELS.build(dict(type='MultiTaskModel', tasks=list(TASKS), adapter=adapter,
                             backbone=SWIN, head=dict(type='HRNetHead')))


def loop_taps(backbone, images):
    """The same computation, one task at a time, with timm's own blocks and merges."""
    pyramids = {}
    for t, task in enumerate(TASKS):
        x = backbone.patch_embed(images)
        prompts = backbone.toy_prompts.expand(len(images), -1, -1)
        taps, stream = [], None  # the task's stream: from each stage's last block
        for i, stage in enumerate(backbone.layers):
            if i:
                merge = stage.downsample
                taps.append(merge(stream))
                x, prompts = merge(x), merge.toy_up(prompts)
            for block in stage.blocks:
                x = SwinTransformerBlock.forward(block, x) + prompts.mean(1)[:, None, None]
                prompts = prompts + x.mean((1, 2))[:, None]
            stream = x + prompts[:, t][:, None, None]
        pyramids[task] = taps + [stream]
    return pyramids


def test_a_plugin_carries_tokens_through_blocks_and_merges_and_streams_per_task():
    model = build(Prompted()).double().eval()
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        got = model.backbone(images, list(TASKS))
        want = loop_taps(model.backbone, images)
    for task in TASKS:
        for level, (ours, theirs) in enumerate(zip(got[task], want[task])):
            assert_identity(ours, theirs.permute(0, 3, 1, 2), f'{task} tap {level}')


def test_checkpointed_blocks_carry_the_whole_state_and_give_the_same_gradients():
    plain = build(Prompted()).double().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.backbone.set_grad_checkpointing(True)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model(images).values()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0]['backbone.toy_prompts'].any()
    assert list(grads[1]) == list(grads[0])
    assert_identities(grads[1].values(), grads[0].values(), 'gradient')


def test_a_plain_block_given_tokens_is_one_error_naming_the_fix():
    class Tokens(AdapterStrategy):  # adds a token but leaves the blocks timm's
        def apply(self, model):
            model.backbone.streams = model.backbone.streams.with_token(
                'prompts', merge=merge_prompts, start=start_prompts)
            model.backbone.toy_prompts = nn.Parameter(torch.zeros(2, 16))
    model = build(Tokens())
    with pytest.raises(StrategyError, match=r'^SwinBackbone: a SwinTransformerBlock takes one '
                                            r'tensor, but the streams carry prompts'):
        model(torch.randn(1, 3, 64, 64))


def test_policy_mistakes_are_one_error_each():
    policy = StreamPolicy().with_tasks(TASKS, owner='A')
    with pytest.raises(StrategyError, match=r"^B: the backbone has task streams already "
                                            r"\(for \['semseg', 'normals'\]\)"):
        policy.with_tasks(TASKS, owner='B')
    with pytest.raises(StrategyError, match='^A: task streams that start by stacking leave no'):
        StreamPolicy().with_tasks(TASKS, start='patch_embed', owner='A')
    with pytest.raises(StrategyError, match="^B: the streams carry a token 'vpt' already"):
        StreamPolicy().with_token('vpt', merge_prompts).with_token(
            'vpt', merge_prompts, owner='B')
