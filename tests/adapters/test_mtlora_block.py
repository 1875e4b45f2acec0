"""MTLoRA's last block against the reference algebra (MTLORA.md), written out directly here:
plain per-task loops, explicit low-rank terms, window attention from timm's partition
functions. Dropout off, drop path 0, every B (and the addition norms) non-zero.

Both sides are computed in float64 and must agree to float64 rounding (tests/tolerance.py):
the fused paths sum in other orders than the reference, and in float32 that alone moves
results by 1e-5 on some CPUs."""
import adapterkit  # noqa: F401  (installs the compat shims first)
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from timm.models.swin_transformer import window_partition, window_reverse
from tolerance import assert_identities, assert_identity

from adapterkit.adapters import MTLoRABlock
from adapterkit.registry import MODELS

TASKS = ['semseg', 'human_parts', 'normals']
TASK_RANK = dict(semseg=2, human_parts=5, normals=3)  # unequal ranks: per-task ranks
TASK_SCALE = dict(semseg=1.5, human_parts=0.5, normals=2.0)
SCALE = 3.0
MINI_SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                 num_heads=(1, 2, 2, 4), window_size=4, drop_path_rate=0.0)


def mini_model(shared_mode, tasks=TASKS, **options):
    init_default_scope('adapterkit')
    torch.manual_seed(0)
    adapter = dict(type='MTLoRA', rank=4, task_rank=TASK_RANK, scale=SCALE,
                   task_scale=TASK_SCALE, dropout=0.0, shared_mode=shared_mode)
    adapter.update(options)
    model = MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                              backbone=MINI_SWIN, head=dict(type='HRNetHead')))
    with torch.no_grad():  # make every delta count: B starts at zero, the norm at identity
        for name, param in model.backbone.named_parameters():
            if '_B' in name or 'lora_norm' in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model.double().eval()


def randn(*shape, **options):
    return torch.randn(*shape, dtype=torch.float64, **options)


# ---------------------------------------------------------------- the reference, directly
def linear(layer, x):
    return x @ layer.weight.T + (layer.bias if layer.bias is not None else 0)


def low_rank(a, b, scale, x):
    return scale * (x @ a.T) @ b.T


def shared_delta(layer, x):
    return low_rank(layer.lora_shared_A, layer.lora_shared_B, SCALE, x)


def task_delta(layer, task, x):
    return low_rank(layer.lora_tasks_A[task], layer.lora_tasks_B[task], TASK_SCALE[task], x)


def mtlora_layer(layer, mode, x, x_tasks=None):
    """(shared output, {task: task output}) of one adapted layer, per MTLORA.md."""
    frozen = linear(layer, x)
    inputs = {t: x if x_tasks is None else x_tasks[t] for t in TASKS}
    if mode == 'addition':
        outs = {t: frozen + task_delta(layer, t, inputs[t]) for t in TASKS}
        total = sum(outs.values())
        return frozen + F.layer_norm(total, total.shape[-1:], layer.lora_norm.weight,
                                     layer.lora_norm.bias), outs
    shared = frozen + shared_delta(layer, x)
    base = frozen if mode == 'matrix' else shared  # matrixv2 adds the shared delta too
    return shared, {t: base + task_delta(layer, t, inputs[t]) for t in TASKS}


def window_attention_before_proj(block, x):
    """o: shifted-window multi-head attention of the TA-adapted fused qkv, in (B, H, W, C)."""
    attn = block.attn
    batch, height, width, channels = x.shape
    shift, window = block.shift_size, block.window_size
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    windows = window_partition(x, window).reshape(-1, window[0] * window[1], channels)
    qkv = linear(attn.qkv, windows) + shared_delta(attn.qkv, windows)
    tokens, heads = windows.shape[1], attn.num_heads
    q, k, v = qkv.reshape(-1, tokens, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[attn.relative_position_index.reshape(-1)]
    logits = logits + bias.reshape(tokens, tokens, heads).permute(2, 0, 1)
    if block.attn_mask is not None:
        count = block.attn_mask.shape[0]
        logits = (logits.reshape(-1, count, heads, tokens, tokens)
                  + block.attn_mask[None, :, None]).reshape(-1, heads, tokens, tokens)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(-1, *window, channels)
    out = window_reverse(out, window, height, width)
    if any(shift):
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out


def reference_block(block, mode, z):
    """[out, out_task_1, ...] of a last block, per "The last block of each stage"."""
    o = window_attention_before_proj(block, block.norm1(z))
    proj, proj_t = mtlora_layer(block.attn.proj, mode, o)
    a = z + proj
    a_t = {t: z + proj_t[t] for t in TASKS}
    norm = block.norm2
    fc1, fc1_t = mtlora_layer(block.mlp.fc1, mode, norm(a), {t: norm(a_t[t]) for t in TASKS})
    h, h_t = F.gelu(fc1), {t: F.gelu(fc1_t[t]) for t in TASKS}
    y, y_t = mtlora_layer(block.mlp.fc2, mode, h, h_t)
    return [a + y] + [a_t[t] + y_t[t] for t in TASKS]


def streams(shared, tasks):
    """[shared, task_1, ...] from a block's (shared, tasks stacked task-major) pair."""
    return [shared, *tasks.chunk(len(TASKS))]


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize('mode', ['matrix', 'matrixv2', 'addition'])
@pytest.mark.parametrize('stage', [0, 2])  # stage 0: shifted windows; stage 2: one window
def test_last_block_matches_the_reference_algebra(mode, stage):
    model = mini_model(mode)
    block = model.backbone.layers[stage].blocks[-1]
    assert isinstance(block, MTLoRABlock)
    assert any(block.shift_size) == (stage == 0)
    resolution = 16 // 2 ** stage
    z = randn(2, resolution, resolution, block.dim)
    with torch.no_grad():
        shared, tasks = block(z)
        expected = reference_block(block, mode, z)
    assert shared.shape == (2, resolution, resolution, block.dim)
    assert tasks.shape == (2 * len(TASKS), resolution, resolution, block.dim)  # task-major
    assert_identities(streams(shared, tasks), expected, 'stream')


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2', 'addition'])
def test_last_block_gradients_match_the_reference_algebra(mode):
    block = mini_model(mode).backbone.layers[0].blocks[-1]
    z = randn(2, 16, 16, block.dim, requires_grad=True)
    weights = randn(1 + len(TASKS), 2, 16, 16, block.dim)  # a loss touching every stream
    params = [p for n, p in block.named_parameters() if 'lora_' in n]

    def gradients(outputs):
        loss = sum((w * out).sum() for w, out in zip(weights, outputs))
        return torch.autograd.grad(loss, [z] + params)

    got = gradients(streams(*block(z)))
    want = gradients(reference_block(block, mode, z))
    assert_identities(got, want, 'gradient')


def test_lora_only_keeps_timm_blocks_with_shared_lora_only():
    model = mini_model('lora_only')
    block = model.backbone.layers[0].blocks[-1]
    assert not isinstance(block, MTLoRABlock) and model.backbone.stream_tasks is None
    assert not any('lora_tasks' in n for n, _ in model.backbone.named_parameters())
    z = randn(2, 16, 16, block.dim)
    with torch.no_grad():
        o = window_attention_before_proj(block, block.norm1(z))
        a = z + linear(block.attn.proj, o) + shared_delta(block.attn.proj, o)
        fc1 = block.mlp.fc1
        h = F.gelu(linear(fc1, block.norm2(a)) + shared_delta(fc1, block.norm2(a)))
        want = a + linear(block.mlp.fc2, h) + shared_delta(block.mlp.fc2, h)
        assert_identity(block(z), want)
        pyramids = model.backbone(randn(1, 3, 64, 64), TASKS)
    assert all(pyramids[t] is pyramids[TASKS[0]] for t in TASKS)  # the shared pyramid


def test_each_task_gets_its_own_pyramid_from_its_stream():
    model = mini_model('matrix')
    backbone = model.backbone
    x = randn(2, 3, 64, 64)
    with torch.no_grad():
        pyramids = backbone(x, TASKS)
        shared = backbone.forward_features(x)
        # by hand: split each stage's last output by stream; every stream goes through the
        # merge after the stage, the next stage continues from the shared stream only
        feats, expected = backbone.patch_embed(x), []
        for i, stage in enumerate(backbone.layers):
            outputs = streams(*stage.blocks(stage.downsample(feats)))
            merge = backbone.layers[i + 1].downsample if i < 3 else torch.nn.Identity()
            expected.append([merge(s).permute(0, 3, 1, 2) for s in outputs])
            feats = outputs[0]
    for index, task in enumerate(TASKS, start=1):
        maps = pyramids[task]
        assert [tuple(m.shape) for m in maps] == [(2, 32, 8, 8), (2, 64, 4, 4),
                                                   (2, 128, 2, 2), (2, 128, 2, 2)]
        for level in range(4):
            assert_identity(maps[level], expected[level][index])
        assert not torch.allclose(maps[0], shared[0])  # a task stream is not the shared one
    for level in range(4):  # forward_features answers the shared stream
        assert_identity(shared[level], expected[level][0])


def test_a_model_with_a_task_subset_gets_streams_for_its_tasks_only():
    model = mini_model('matrix', tasks=['sal', 'normals'], task_rank=3, task_scale=None)
    backbone = model.backbone
    assert backbone.stream_tasks == ['sal', 'normals']
    proj = backbone.layers[1].blocks[-1].attn.proj
    assert list(proj.lora_tasks_A) == ['sal', 'normals']
    assert proj.lora_tasks_A['sal'].shape == (3, 32)
    with torch.no_grad():
        logits = model(randn(1, 3, 64, 64))
        assert set(logits) == {'sal', 'normals'}
        with pytest.raises(KeyError, match="no stream for task 'semseg'"):
            backbone(randn(1, 3, 64, 64), ['semseg'])


def test_task_ranks_and_scales_per_task_and_stage():
    model = mini_model('matrix', task_rank=dict(semseg=[1, 2, 3, 4], human_parts=2,
                                                normals=[5, 6, 7, 8]))
    for stage in range(4):
        fc2 = model.backbone.layers[stage].blocks[-1].mlp.fc2
        ranks = {t: fc2.lora_tasks_A[t].shape[0] for t in TASKS}
        assert ranks == dict(semseg=stage + 1, human_parts=2, normals=stage + 5)
        assert fc2.lora_task_scale == TASK_SCALE
        # the batched product pads smaller ranks in a copy, never with parameters
        assert all(fc2.lora_tasks_B[t].shape == (fc2.out_features, ranks[t]) for t in TASKS)


class _PlainGELU(torch.nn.GELU):
    """A GELU the fused MLP paths do not recognise: the block takes its generic path."""


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2'])
def test_fused_mlp_paths_train_exactly_as_the_generic_ones(mode):
    """With LoRA dropout and drop path on, the MLPs that recompute what they do not keep
    (MTLoRAMlp; the task hidden layer of MTLoRABlock) give the same outputs and gradients
    as timm's Mlp and the layers' generic ``forward_streams``, from the same random draws."""
    from timm.layers import DropPath, Mlp

    from adapterkit.adapters.mtlora import MTLoRAMlp

    def model():
        built = mini_model(mode, dropout=0.3).train()
        for stage in built.backbone.layers:
            for block in stage.blocks:
                block.drop_path1, block.drop_path2 = DropPath(0.2), DropPath(0.2)
        return built

    def run(model):
        torch.manual_seed(7)
        outputs = model.backbone(randn(2, 3, 64, 64), TASKS)
        loss = sum((m ** 2).mean() for maps in outputs.values() for m in maps)
        params = [p for p in model.backbone.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [loss.detach()] + [g for g in grads if g is not None]

    fused, generic = model(), model()
    mlps = [block.mlp for stage in generic.backbone.layers for block in stage.blocks]
    assert sum(type(mlp) is MTLoRAMlp for mlp in mlps) == 4  # all but the 4 last blocks
    for mlp in mlps:
        if type(mlp) is MTLoRAMlp:
            mlp.__class__ = Mlp
        else:
            mlp.act = _PlainGELU()
    (loss, *grads), (want_loss, *want_grads) = run(fused), run(generic)
    assert_identity(loss, want_loss, 'loss')
    assert_identities(grads, want_grads, 'gradient')


@pytest.mark.parametrize('resolution, shift', [(8, 2), (8, 0), (10, 0), (11, 2)],
                         ids=['shifted', 'plain', 'padded', 'padded-shifted'])
def test_shared_block_equals_timm_block(resolution, shift):
    """The other blocks (qkv and fc1 reading their norms through ``act``) give timm's block's
    values and gradients, drop path on (same draws), LoRA dropout off (with it, proj's draws
    fall on another layout: the same distribution, other elements)."""
    import copy

    from timm.models.swin_transformer import SwinTransformerBlock

    from adapterkit.adapters.mtlora import MTLoRALinear, MTLoRAMlp, MTLoRASharedBlock
    torch.manual_seed(0)
    block = SwinTransformerBlock(dim=16, input_resolution=(resolution, resolution),
                                 num_heads=2, window_size=4, shift_size=shift,
                                 drop_path=0.3).double().train()
    block.attn.fused_attn = False  # timm's explicit attention on both sides
    for name in ('qkv', 'proj'):
        setattr(block.attn, name, MTLoRALinear(getattr(block.attn, name), rank=3, scale=2.0))
    for name in ('fc1', 'fc2'):
        setattr(block.mlp, name, MTLoRALinear(getattr(block.mlp, name), rank=3, scale=2.0))
    with torch.no_grad():  # non-trivial norms and deltas
        for name, param in block.named_parameters():
            if 'norm' in name or '_B' in name:
                param.add_(torch.randn_like(param) * 0.3)
    timm_block = copy.deepcopy(block)
    MTLoRASharedBlock.adopt(block)
    MTLoRAMlp.adopt(block.mlp)
    x = randn(2, resolution, resolution, 16, requires_grad=True)
    results = []
    for module in (timm_block, block):
        torch.manual_seed(1)
        out = module(x)
        inputs = [x] + [p for n, p in module.named_parameters() if 'lora_' in n]
        results.append((out, torch.autograd.grad(out.square().sum(), inputs)))
    (want, want_grads), (got, grads) = results
    assert_identity(got, want, 'output')
    assert_identities(grads, want_grads, 'gradient')


def test_heads_reading_projected_merges_train_exactly_as_on_the_merged_maps():
    """The task streams' merges reach HRNetHead as ProjectedMap (reduction and downsampler
    multiplied first): the same logits and gradients as from the merged maps themselves."""
    from adapterkit.layers.projected_map import ProjectedMap

    def run(projected):
        model = mini_model('matrix', dropout=0.3).train()
        model._projected_maps = projected
        torch.manual_seed(7)
        logits = model(randn(2, 3, 64, 64))
        loss = sum((v ** 2).mean() for v in logits.values())
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [loss.detach(), *(randn(0) if g is None else g for g in grads)]

    model = mini_model('matrix')
    maps = model.backbone(randn(1, 3, 64, 64), TASKS, projected=True)[TASKS[0]]
    assert [type(m) for m in maps] == [ProjectedMap] * 3 + [torch.Tensor]
    assert maps[0].shape == maps[0].materialize().shape == (1, 32, 8, 8)
    assert model._projected_maps  # the model's own choice
    (loss, *grads), (want_loss, *want_grads) = run(True), run(False)
    assert_identity(loss, want_loss, 'loss')
    assert_identities(grads, want_grads, 'gradient')
