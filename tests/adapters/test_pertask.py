"""PerTask: every task its own copy of a strategy's parameters, checked against plain loops
over tasks: each task's logits equal those of a single-task model of the wrapped strategy
holding that task's copies and head. Counts at Swin-T 448, where the streams start, merging
one task (and loading it into timm), gradient checkpointing and the refusals.

Equalities run in float64, where both sides differ by rounding alone (tests/tolerance.py:
3.7e-9 of the outputs' scale, while another task's copy moves them by more than 1e-3 of it);
one also in float32, where both sides lie within float32 rounding of the float64 model."""
import copy

import pytest
import timm
import torch
from mmengine.registry import init_default_scope

import adapterkit  # noqa: F401  (registers everything)
from adapterkit import count_parameters
from adapterkit.adapters.pertask import PerTaskModule
from adapterkit.errors import NotMergeableError, StrategyError, UnknownNameError
from adapterkit.models.checkpoint import merged_state_dict
from adapterkit.plugins import load_plugins
from adapterkit.registry import MODELS
from tolerance import assert_identities, assert_identity, assert_within, gamma

SWIN = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
            window_size=4)
TASKS = ('semseg', 'normals', 'sal')
FOUR = ['semseg', 'human_parts', 'sal', 'normals']
LORA = dict(type='LoRA', rank=2, dropout=0.1, trainable=['relative_position_bias'])

load_plugins()  # DoRA, the example plugin, is wrapped too


def build(adapter, tasks=TASKS, seed=0, **backbone):
    init_default_scope('adapterkit')
    torch.manual_seed(seed)
    return MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                             backbone=dict(type='SwinBackbone', **{**SWIN, **backbone}),
                             head=dict(type='HRNetHead')))


def as_trained(model, seed=1):
    """Every trainable tensor moved (every task's copy its own way), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model.eval()


def single_task_model(per_task, strategy, index, task):
    """A model of ``strategy`` alone for ``task``, holding that task's copies and head."""
    single = build(strategy, tasks=(task,)).to(next(per_task.parameters()).dtype)
    source = per_task.state_dict()
    state = {}
    for key, value in single.state_dict().items():
        holder, _, leaf = key.rpartition('.')
        copies = f'{holder}.pertask_{leaf}'
        if copies in source:  # a pretrained tensor with a copy per task
            state[key] = source[copies][index]
        elif source[key].shape != value.shape:  # a stacked injected tensor
            state[key] = source[key][index]
        else:
            state[key] = source[key]
    single.load_state_dict(state)
    return single.eval()


IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def each_task_and_its_single_task_model(per_task, strategy):
    """{task: (the task's logits in per_task, those of its single-task model)}."""
    images = IMAGES.to(next(per_task.parameters()).dtype)
    with torch.no_grad():
        logits = per_task(images)
        return {task: (logits[task],
                       single_task_model(per_task, strategy, index, task)(images)[task])
                for index, task in enumerate(per_task.tasks)}


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize('strategy', [
    LORA,
    dict(type='DoRA', rank=2, alpha=4.0),
    dict(type='BitFit'),  # the patch embedding's bias too: streams from the start
    dict(type='VPT', num_tokens=3, deep=False, dropout=0.1),
], ids=lambda s: s['type'])
def test_each_task_computes_what_its_single_task_model_does(strategy):
    per_task = as_trained(build(dict(type='PerTask', strategy=strategy)).double())
    for task, (got, alone) in each_task_and_its_single_task_model(per_task, strategy).items():
        assert_identity(got, alone, task)


def test_in_float32_each_task_is_its_single_task_model_to_float32_rounding():
    per_task = as_trained(build(dict(type='PerTask', strategy=LORA)))
    pairs = each_task_and_its_single_task_model(per_task, LORA)
    with torch.no_grad():
        exact = copy.deepcopy(per_task).double()(IMAGES.double())
    # n = 2^13 > the ~7,700 terms summed along a path from the image to the logits: per
    # block 11C + 48, per merge 12C, the head's 480, widths C of 16-128 (docs/testing.md)
    allowed = gamma(2 ** 13, torch.float32)
    for task, (got, alone) in pairs.items():
        want = exact[task]
        assert_within(got, want, allowed * want.abs().max(), f'{task} per task')
        assert_within(alone, want, allowed * want.abs().max(), f'{task} alone')


def test_task_streams_start_at_the_first_unit_holding_a_per_task_tensor():
    starts = {}
    for name, strategy in (('lora', dict(type='LoRA', rank=2)), ('bitfit', dict(type='BitFit')),
                           ('stage_2', dict(type='LoRA', rank=2,
                                            targets=r'layers\.2\.blocks\.\d\.attn\.qkv'))):
        model = build(dict(type='PerTask', strategy=strategy))
        starts[name] = model.backbone.streams.start
        assert model.backbone.streams.tasks == TASKS and model.backbone.streams.through_stages
    assert starts == dict(lora='layers.0.blocks.0', bitfit='patch_embed',
                          stage_2='layers.2.blocks.0')
    model = as_trained(build(dict(type='PerTask', strategy=dict(
        type='LoRA', rank=2, targets=r'layers\.2\.blocks\.\d\.attn\.qkv'))))
    with torch.no_grad():
        pyramids = model.backbone(torch.randn(1, 3, 64, 64), list(TASKS))
    # before stage 2 one shared stream, from stage 2 on one per task
    assert torch.equal(pyramids['semseg'][1], pyramids['sal'][1])
    assert not torch.equal(pyramids['semseg'][2], pyramids['sal'][2])


def test_a_task_loss_trains_that_task_copies_only():
    model = as_trained(build(dict(type='PerTask', strategy=LORA), drop_path_rate=0.1)).train()
    model(torch.randn(2, 3, 64, 64))['normals'].square().mean().backward()
    index = TASKS.index('normals')
    for name, param in model.backbone.named_parameters():
        if param.requires_grad:
            others = torch.cat([param.grad[:index], param.grad[index + 1:]])
            assert not others.any() and param.grad[index].any(), name


def test_lora_layers_run_their_task_batched_forward_with_vmaps_values_and_gradients():
    """LoRALinear's forward_tasks (hand-written backward) against vmap's per-stream forward,
    float64 (rounding alone differs), scale 2 so that the scale is exercised."""
    batched = as_trained(build(dict(type='PerTask', strategy=dict(type='LoRA', rank=2,
                                                                  alpha=4.0))).double()).train()
    per_task = [m for m in batched.backbone.modules() if isinstance(m, PerTaskModule)]
    assert len(per_task) == 32 and all(m.pertask_batched for m in per_task)
    vmapped = copy.deepcopy(batched)
    for module in vmapped.backbone.modules():
        if isinstance(module, PerTaskModule):
            module.pertask_batched = False
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    results = []
    for model in (batched, vmapped):
        logits = model(images)
        sum((o * torch.linspace(-1, 1, o.shape[1], dtype=o.dtype)[:, None, None]).mean()
            for o in logits.values()).backward()
        results.append((logits, {n: p.grad for n, p in model.named_parameters()
                                 if p.requires_grad}))
    (logits, grads), (want_logits, want_grads) = results
    for task, want in want_logits.items():
        assert_identity(logits[task], want, task)
    assert grads.keys() == want_grads.keys() and grads
    assert_identities([grads[name] for name in want_grads], want_grads.values(), 'gradient')


def test_checkpointed_blocks_give_the_same_gradients():
    plain = build(dict(type='PerTask', strategy=dict(type='LoRA', rank=2,
                                                     trainable=['relative_position_bias'])))
    plain = as_trained(plain).double().train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.backbone.set_grad_checkpointing(True)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model(images).values()).backward()
        grads.append({n: p.grad for n, p in model.backbone.named_parameters() if p.requires_grad})
    assert list(grads[1]) == list(grads[0])
    assert_identities(grads[1].values(), grads[0].values(), 'gradient')


def test_pretrained_weights_load_into_every_task_copy(tmp_path):
    source = timm.create_model('swin_tiny_patch4_window7_224', num_classes=0, **SWIN)
    path = tmp_path / 'swin.pth'
    torch.save(source.state_dict(), path)
    model = build(dict(type='PerTask', strategy=dict(type='BitFit')), pretrained=str(path))
    model.init_weights()
    for name, table in source.named_parameters():
        if name.endswith('.bias') and not name.startswith(('head', 'norm.')):
            holder, _, leaf = name.rpartition('.')
            copies = model.backbone.get_parameter(f'{holder}.pertask_{leaf}')
            assert all(torch.equal(c, table) for c in copies), name


# ---------------------------------------------------------------- counts
def meta_counts(adapter):
    init_default_scope('adapterkit')
    with torch.device('meta'):
        model = MODELS.build(dict(type='MultiTaskModel', tasks=FOUR, adapter=adapter,
                                  backbone=dict(type='SwinBackbone', img_size=448),
                                  head=dict(type='HRNetHead')))
    return count_parameters(model)


@pytest.mark.parametrize('strategy, per_copy', [
    (dict(type='LoRA', rank=4), 282_624),  # 70,656 x r
    (dict(type='BitFit', trainable=['relative_position_bias']), 74_778),  # biases + tables
    (dict(type='DecoderOnly', trainable=['relative_position_bias']), 23_322),  # 169 x 138
], ids=['lora', 'bitfit', 'relative_bias'])
def test_swin_t_at_448_with_four_tasks_trains_decoders_and_four_copies(strategy, per_copy):
    single = meta_counts(strategy)
    assert single['backbone_adapter'] + single['backbone_unfrozen'] == per_copy
    counts = meta_counts(dict(type='PerTask', strategy=strategy))
    assert counts['backbone_adapter'] == 4 * per_copy and counts['backbone_unfrozen'] == 0
    assert counts['trainable'] == 1_946_624 + 4 * per_copy
    assert counts['frozen'] == 27_517_818  # the pretrained tensors stay, frozen


def test_per_task_lora_r4_trains_exactly_3_077_120():
    assert meta_counts(dict(type='PerTask', strategy=dict(type='LoRA', rank=4)))[
        'trainable'] == 1_946_624 + 4 * 282_624 == 3_077_120


# ---------------------------------------------------------------- merging
def test_merging_a_task_folds_its_copies_and_unmerging_restores_the_model():
    model = as_trained(build(dict(type='PerTask', strategy=LORA)).double())
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with torch.no_grad():
        unmerged = model(images)
        model.merge_adapters('normals')
        merged = model(images)['normals']
        assert model.backbone.streams.tasks is None  # one stream: that task's
        model.unmerge_adapters()
        again = model(images)
    assert_identity(merged, unmerged['normals'], 'normals merged')
    for task in TASKS:
        assert_identity(again[task], unmerged[task], f'{task} unmerged again')
    for key, value in model.backbone.state_dict().items():
        if value.is_floating_point():
            assert_identity(value, weights[key], key)
        else:
            assert torch.equal(value, weights[key]), key


def test_a_merged_task_loads_strictly_into_timm_at_448_and_computes_its_stream():
    model = build(dict(type='PerTask', strategy=dict(type='LoRA', rank=4)), tasks=FOUR,
                  img_size=448, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                  window_size=7)
    as_trained(model)
    state = merged_state_dict(model, 'sal')
    assert {k.split('.')[1] for k in state if k.startswith('heads.')} == {'sal'}
    swin = timm.create_model('swin_tiny_patch4_window7_224', img_size=448, num_classes=0)
    swin.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                          if k.startswith('backbone.')}, strict=True)
    swin.norm = torch.nn.Identity()
    images = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        want = model.backbone(images, ['sal'])['sal'][-1]
        got = swin.eval().forward_features(images).permute(0, 3, 1, 2)
    # float32 (float64 doubles the time): each side within gamma(n) max|stream| of the
    # exact stream, n = 2^16 > the ~58,000 terms summed along a path through Swin-T's
    # 12 blocks (11C + 130 each), its merges (12C) and the patch embedding (docs/testing.md)
    allowed = 2 * gamma(2 ** 16, torch.float32) * want.abs().max()
    assert_within(got, want, allowed, 'sal stream')


def test_a_merge_without_a_task_is_refused_with_how_to_pick_one():
    model = build(dict(type='PerTask', strategy=dict(type='LoRA', rank=2)))
    with pytest.raises(NotMergeableError) as err:
        model.merge_adapters()
    assert str(err.value) == (
        'PerTask cannot be merged into the backbone weights (every task has its own LoRA '
        'weights: merge one task, with `adapterkit export --merge --task TASK` or '
        'model.merge_adapters(task=TASK))')
    with pytest.raises(UnknownNameError, match="merge: no task 'depth'"):
        model.merge_adapters('depth')
    vpt = build(dict(type='PerTask', strategy=dict(type='VPT', num_tokens=2)))
    with pytest.raises(NotMergeableError, match='^VPT cannot be merged'):
        vpt.merge_adapters('semseg')


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize('adapter, message', [
    (dict(type='PerTask', strategy=dict(type='MTLoRA')),
     'PerTask: MTLoRA gives the tasks streams of their own; wrap a strategy with one set of '
     'parameters'),
    (dict(type='PerTask', strategy='LoRA'),
     "PerTask: strategy must be a strategy config (dict(type=...)), got 'LoRA'"),
    (dict(type='PerTask', strategy=dict(type='LoRA', rnak=2)),
     "LoRA: unknown option 'rnak' (options: targets, rank, alpha, scale, dropout, overrides, "
     "trainable)"),
    ([dict(type='BitFit'), dict(type='PerTask', strategy=dict(type='BitFit'))],
     'PerTask: patch_embed.proj.bias is trained by an earlier strategy and per task by '
     'PerTask(BitFit): train it one way'),
])
def test_what_cannot_be_per_task_is_one_clear_error(adapter, message):
    with pytest.raises(StrategyError) as err:
        build(adapter)
    assert str(err.value) == message


def test_a_tensor_read_outside_its_module_stops_the_first_forward():
    """VPT's blocks read their attention's bias table directly: it cannot be per task."""
    model = build(dict(type='PerTask', strategy=dict(
        type='VPT', num_tokens=2, trainable=['relative_position_bias'])))
    assert isinstance(model.backbone.layers[0].blocks[0].attn, PerTaskModule)
    with pytest.raises(StrategyError, match=r'^PerTask: layers\.0\.blocks\.0\.attn holds '
                                            r'per-task tensors but was never called'):
        model(torch.randn(1, 3, 64, 64))
