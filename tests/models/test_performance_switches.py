"""Speed and memory switches change how the model computes, never what: activation
checkpointing of the Swin blocks and channels-last weights. Each comparison runs in float64
and allows float64 rounding (tests/tolerance.py): the switches sum in other orders."""
import copy
import os.path as osp

import pytest
import torch
from tolerance import assert_identities, assert_identity

from adapterkit.models.backbones.swin import SwinBackbone

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_with_cp_switches_every_stage():
    backbone = SwinBackbone(img_size=64, embed_dim=16, depths=(1, 1, 1, 1),
                            num_heads=(1, 2, 2, 4), window_size=4, with_cp=True)
    assert all(stage.grad_checkpointing for stage in backbone.layers)


@pytest.mark.parametrize('adapter', [
    dict(type='Full'),
    # frozen backbone: the checkpointed blocks get an input that needs no gradient
    dict(type='LoRA', rank=4),
    dict(type='MTLoRA', rank=4, task_rank=2, dropout=0.0),
], ids=lambda a: a['type'])
def test_checkpointed_blocks_give_the_same_gradients(tiny_model, adapter):
    torch.manual_seed(0)
    plain = tiny_model(adapter).double().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.backbone.set_grad_checkpointing(True)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)

    grads, calls = [], []
    for model in (plain, checkpointed):
        block = model.backbone.layers[1].blocks[0]
        calls.append(0)
        block.register_forward_pre_hook(lambda *_: calls.__setitem__(-1, calls[-1] + 1))
        logits = model(images)
        sum(out.square().mean() for out in logits.values()).backward()
        grads.append({name: p.grad for name, p in model.named_parameters() if p.requires_grad})

    assert calls == [1, 2]  # the checkpointed block ran again in the backward pass
    assert grads[0].keys() == grads[1].keys()
    # (MTLoRA's last shared-stream deltas reach no head: no gradient either way)
    backbone = [name for name, grad in grads[0].items()
                if name.startswith('backbone.') and grad is not None]
    assert backbone and all(grads[1][name] is not None for name in backbone)
    computed = [name for name, grad in grads[0].items() if grad is not None]
    assert all(grads[1][name] is None for name in grads[0] if name not in computed)
    assert_identities([grads[1][name] for name in computed], [grads[0][name] for name in computed],
                      'gradient')


@pytest.mark.parametrize('adapter', [dict(type='LoRA', rank=4),
                                     dict(type='MTLoRA', rank=4, task_rank=2, dropout=0.0)],
                         ids=lambda a: a['type'])
def test_fused_attention_gives_the_same_outputs_and_gradients(tiny_model, adapter):
    torch.manual_seed(0)
    fused = tiny_model(adapter).double().train()
    explicit = copy.deepcopy(fused)
    blocks = [block for stage in explicit.backbone.layers for block in stage.blocks]
    assert all(block.attn.fused_attn for block in blocks)  # the default
    for block in blocks:
        block.attn.fused_attn = False
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    results = []
    for model in (fused, explicit):
        logits = model(images)
        sum(out.square().mean() for out in logits.values()).backward()
        results.append((logits, {name: p.grad for name, p in model.named_parameters()
                                 if p.grad is not None}))
    (logits, grads), (want_logits, want_grads) = results
    for name in want_logits:
        assert_identity(logits[name], want_logits[name], name)
    assert grads.keys() == want_grads.keys() and grads
    assert_identities([grads[name] for name in want_grads], want_grads.values(), 'gradient')


def test_channels_last_keeps_the_outputs():
    from adapterkit import build_model, load_config
    config = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')
    plain = build_model(load_config(config)).double().eval()
    nhwc = build_model(load_config(config, {'model.channels_last': True})).double().eval()
    for conv in (nhwc.backbone.patch_embed.proj, nhwc.heads['semseg'].last_layer[0]):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    nhwc.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = plain(images), nhwc(images)
    for name in expected:
        assert_identity(actual[name], expected[name], name)


def test_torch_compile_compiles_backbone_and_heads_in_place():
    from adapterkit import build_model, load_config
    config = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')
    plain = build_model(load_config(config))
    # 'eager' traces with TorchDynamo without generating code: fast, and enough to show
    # that the backbone and heads compile without breaking
    options = {'model.torch_compile': {'backend': 'eager', 'fullgraph': True}}
    compiled = build_model(load_config(config, options))
    assert list(compiled.state_dict()) == list(plain.state_dict())  # names unchanged
    compiled.load_state_dict(plain.state_dict())
    plain.double(), compiled.double()
    images = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    expected, actual = plain(images), compiled(images)
    for name in expected:
        assert_identity(actual[name], expected[name], name)
