"""HyperFormer, Polyhistor and Polyhistor-Lite: every task's logits equal those of the plain
frozen backbone and the same heads, run once per task with that task's adapters computed here
from the formulas (plain loops over tasks, blocks, positions and layer embeddings: the
projector on z_t (HyperFormer, its own in every block), on [z_t; l_j; p] (Polyhistor, one per
stage) or [z_t; l_{j,i}; p] (Polyhistor-Lite), every generated matrix from its head, ``A @ B``,
``sum_i torch.kron(K_i, W_i)``, the adapter ``x + LN(U phi(D x + b_D) + b_U)``). Counts at
Swin-T 448 (docs/strategies.md), the hypernetwork run once per forward, a task's loss
reaching its own embedding only, checkpointed blocks, and the refusals.

Identities run in float64 (tests/tolerance.py: ``assert_identity``); one check runs the
batched model in float32 against the float64 formulas."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from tolerance import assert_identities, assert_identity, assert_within, gamma

import adapterkit  # noqa: F401  (registers everything)
from adapterkit import count_parameters
from adapterkit.errors import StrategyError
from adapterkit.registry import ADAPTERS, MODELS

SWIN = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
            window_size=4)
TASKS = ('semseg', 'normals', 'sal')
FOUR = ['semseg', 'human_parts', 'sal', 'normals']
SMALL = dict(task_dim=8, hidden_dim=16)


def build(adapter, tasks=TASKS, seed=0, **backbone):
    init_default_scope('adapterkit')
    torch.manual_seed(seed)
    return MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                             backbone=dict(type='SwinBackbone', **{**SWIN, **backbone}),
                             head=dict(type='HRNetHead')))


def as_trained(model, seed=1):
    """Every trainable tensor moved (the heads' and the hypernetworks' own ways), eval."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model.eval()


# ---------------------------------------------------------------- the formulas, by hand
def linear(params, name, x):
    return params[f'{name}.weight'] @ x + params[f'{name}.bias']


def projection(params, prefix, x):
    """I = LN(W2 ReLU(W1 x + b1) + b2) of the projector at ``prefix``."""
    hidden = torch.relu(linear(params, f'{prefix}.hidden', x))
    h = linear(params, f'{prefix}.out', hidden)
    return F.layer_norm(h, h.shape, params[f'{prefix}.norm.weight'],
                        params[f'{prefix}.norm.bias'], eps=1e-6)


def decomposed(params, heads, i, d, k, r):
    """D = A_D B_D, U = A_U B_U and the biases, from the heads at ``heads``."""
    def head(name, *shape):
        return linear(params, f'{heads}.{name}', i).reshape(shape)
    return (head('down_left', k, r) @ head('down_right', r, d), head('down_bias', k),
            head('up_left', d, r) @ head('up_right', r, k), head('up_bias', d))


POSITION = dict(mlp=0, attn=1)  # the authors' position ids


def hyperformer_weights(params, task, block, stage, position, d, k, r):
    root = f'backbone.hyperformer.blocks.{block}'
    i = projection(params, f'{root}.projector',
                   params['backbone.hyperformer.task_embedding'][task])
    def head(name, *shape):
        return linear(params, f'{root}.heads.{position}.{name}', i).reshape(shape)
    return (head('down', k, d), head('down_bias', k), head('up', d, k), head('up_bias', d),
            head('norm_weight', d), head('norm_bias', d))


def polyhistor_weights(params, task, block, stage, position, d, k, r):
    root = f'backbone.polyhistor.stages.{stage}'
    x = torch.cat([params['backbone.polyhistor.task_embedding'][task],
                   params[f'{root}.layer_embedding'][block - 2 * stage],  # depths 2, 2, 2, 2
                   params[f'{root}.position_embedding'][POSITION[position]]])
    i = projection(params, f'{root}.projector', x)
    return decomposed(params, f'{root}.heads', i, d, k, r) + (None, None)


def lite_weights(params, task, block, stage, position, d, k, r):
    root = 'backbone.polyhistor_lite'
    c = 2 ** stage
    sets = []
    for layer in params[f'{root}.layer_embedding.{block}']:  # c of them
        x = torch.cat([params[f'{root}.task_embedding'][task], layer,
                       params[f'{root}.position_embedding'][POSITION[position]]])
        i = projection(params, f'{root}.projector', x)
        sets.append(decomposed(params, f'{root}.heads', i, d // c, k // c, r))
    if c == 1:
        return sets[0] + (None, None)
    kernel = params[f'{root}.kernels.{block}.{position}.weight']  # (c, c, c): one for D and U
    kappa = params[f'{root}.kernels.{block}.{position}.bias']  # (c, c): one for b_D and b_U
    front = LITE_FRONT[0]
    def combine(n, kernels):
        return sum(torch.kron(kernels[i], w[n]) if front else torch.kron(w[n], kernels[i])
                   for i, w in enumerate(sets))
    return (combine(0, kernel), combine(1, kappa), combine(2, kernel), combine(3, kappa),
            None, None)


LITE_FRONT = [True]  # the kernel_front of the model lite_weights reads
WEIGHTS = dict(HyperFormer=hyperformer_weights, Polyhistor=polyhistor_weights,
               PolyhistorLite=lite_weights)


def adapter_output(x, weights):
    down, down_bias, up, up_bias, gain, shift = weights
    out = F.gelu(x @ down.T + down_bias) @ up.T + up_bias
    if gain is not None:
        mean = out.mean(-1, keepdim=True)
        var = (out - mean).square().mean(-1, keepdim=True)
        out = (out - mean) / torch.sqrt(var + 1e-5) * gain + shift
    return x + out


def task_by_hand(model, kind, task, images, rank, weights_of=None):
    """The plain frozen backbone and heads of ``model``, its adapters for ``task`` (or for
    the task ``weights_of``) hooked onto attn and mlp of every block: ``task``'s logits."""
    params = dict(model.named_parameters())
    root = f'backbone.{model.adapters[0].child}.'
    plain = build(None, tasks=model.tasks).to(images.dtype)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(root)})
    plain.eval()
    t = list(model.tasks).index(weights_of or task)
    block = 0
    for s, stage in enumerate(plain.backbone.layers):
        for blk in stage.blocks:
            for position in ('attn', 'mlp'):
                d = SWIN['embed_dim'] * 2 ** s
                weights = WEIGHTS[kind](params, t, block, s, position, d, d // 4, rank)
                getattr(blk, position).register_forward_hook(
                    lambda m, a, out, w=weights: adapter_output(out, w))
            block += 1
    with torch.no_grad():
        return plain(images)[task]


@pytest.mark.parametrize('kind, options', [
    ('HyperFormer', {}), ('Polyhistor', dict(rank=2)),
    ('PolyhistorLite', dict(rank=2)), ('PolyhistorLite', dict(rank=2, kernel_front=False))],
    ids=['HyperFormer', 'Polyhistor', 'PolyhistorLite', 'PolyhistorLite-kernel-last'])
def test_every_task_computes_its_formulas_over_the_frozen_backbone(kind, options):
    model = as_trained(build(dict(type=kind, **options, **SMALL)).double())
    LITE_FRONT[0] = options.get('kernel_front', True)
    images = torch.randn(1, 3, 64, 64, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(images)
    by_hand = {task: task_by_hand(model, kind, task, images, rank=2) for task in TASKS}
    for task in TASKS:
        assert_identity(logits[task], by_hand[task], f'{kind} {task}')
    # the tasks' adapters differ: another task's weights would move the logits far beyond
    # the tolerance above
    other = task_by_hand(model, kind, 'semseg', images, 2, weights_of='normals')
    assert (other - logits['semseg']).abs().max() > 1e-4 * logits['semseg'].abs().max()


def test_in_float32_polyhistor_lies_within_float32_rounding_of_its_formulas():
    model = as_trained(build(dict(type='Polyhistor', rank=2, **SMALL)))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(images)
    exact = copy.deepcopy(model).double()
    # 2^14 terms: the path's sums counted as docs/testing.md says (products' inner
    # dimensions, 2C per LayerNorm, softmax lengths; about 8,600 here), rounded up
    allowed = gamma(2 ** 14, torch.float32)
    for task in TASKS:
        want = task_by_hand(exact, 'Polyhistor', task, images.double(), rank=2)
        assert_within(logits[task], want, allowed * want.abs().max(), task)


# ---------------------------------------------------------------- once per forward
@pytest.mark.parametrize('kind', ['HyperFormer', 'PolyhistorLite'])
def test_the_hypernetwork_runs_once_per_forward_for_every_task_and_block(kind):
    model = build(dict(type=kind, **SMALL))
    calls = []
    network = getattr(model.backbone, model.adapters[0].child)
    network.register_forward_hook(lambda m, a, out: calls.append(out))
    with torch.no_grad():
        model(torch.randn(5, 3, 64, 64))
    assert len(calls) == 1 and len(calls[0]) == 16  # 8 blocks x attn, mlp
    assert all(w.down.shape[0] == len(TASKS) for w in calls[0].values())  # not per sample


def test_a_model_copied_after_a_training_forward_computes_the_same():
    model = as_trained(build(dict(type='HyperFormer', **SMALL))).train()
    images = torch.randn(2, 3, 64, 64)
    model(images)  # the adapters now hold weights with a graph, which no copy may take
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        want, got = model.eval()(images), copied(images)
    assert all(torch.equal(got[task], want[task]) for task in TASKS)


def test_a_task_loss_reaches_its_own_task_embedding_only():
    model = as_trained(build(dict(type='Polyhistor', rank=2, **SMALL))).train()
    model(torch.randn(2, 3, 64, 64))['normals'].square().mean().backward()
    grad = model.backbone.polyhistor.task_embedding.grad
    index = TASKS.index('normals')
    assert grad[index].any() and not torch.cat([grad[:index], grad[index + 1:]]).any()


def test_checkpointed_blocks_give_the_same_gradients():
    plain = as_trained(build(dict(type='HyperFormer', **SMALL)).double()).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.backbone.set_grad_checkpointing(True)
    images = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        sum(o.square().mean() for o in model(images).values()).backward()
        grads.append([p.grad for p in model.backbone.parameters() if p.requires_grad])
    assert_identities(grads[1], grads[0], 'gradient')


# ---------------------------------------------------------------- counts
def meta_counts(adapter):
    init_default_scope('adapterkit')
    with torch.device('meta'):
        model = MODELS.build(dict(type='MultiTaskModel', tasks=FOUR, adapter=adapter,
                                  backbone=dict(type='SwinBackbone', img_size=448),
                                  head=dict(type='HRNetHead')))
    return count_parameters(model)


T, E, WIDTHS, DEPTHS = 4, 64, (96, 192, 384, 768), (2, 2, 6, 2)
PROJECTOR, JOINED = 16_704, 33_088  # e -> h -> e with its LayerNorm; 3e -> h -> e


def hyperformer_count(rho, norm=True):
    per_block = [PROJECTOR + 130 * (2 * d * (d // rho) + d + d // rho + 2 * d * norm)
                 for d, n in zip(WIDTHS, DEPTHS) for _ in range(n)]
    return T * E + sum(per_block)


def polyhistor_count(rho, r):
    return T * E + 12 * E + sum(2 * E + JOINED + 65 * (d + d // rho) * (2 * r + 1)
                                for d in WIDTHS)


def lite_count(rho, r):
    scales = [c for n, c in zip(DEPTHS, (1, 2, 4, 8)) for _ in range(n)]
    kernels = sum(2 * (c ** 3 + c ** 2) for c in scales if c > 1)
    return T * E + 2 * E + JOINED + 65 * (96 + 96 // rho) * (2 * r + 1) + E * sum(scales) \
        + kernels


@pytest.mark.parametrize('adapter, formula, added', [
    (dict(type='HyperFormer', reduction_factor=8, conditional_norm=False),
     hyperformer_count(8, norm=False), 70_934_224),
    (dict(type='HyperFormer'), hyperformer_count(4), 142_241_824),
    (dict(type='HyperFormer', reduction_factor=32), hyperformer_count(32), 19_462_804),
    (dict(type='Polyhistor'), polyhistor_count(4, 8), 2_122_888),
    (dict(type='PolyhistorLite'), lite_count(4, 8), 172_328),
], ids=['hyperformer-rho8', 'hyperformer', 'hyperformer-rho32', 'polyhistor',
        'polyhistor-lite'])
def test_swin_t_at_448_with_four_tasks_adds_the_documented_formulas(adapter, formula, added):
    counts = meta_counts(adapter)
    assert counts['backbone_adapter'] == formula == added
    assert counts['trainable'] == 1_946_624 + added and counts['backbone_unfrozen'] == 0
    assert counts['frozen'] == 27_517_818


# ---------------------------------------------------------------- refusals
def test_lite_refuses_a_reduction_factor_that_does_not_scale_with_the_widths():
    model = build(dict(type='DecoderOnly'))
    before = [n for n, _ in model.backbone.named_modules()]
    with pytest.raises(StrategyError) as err:
        ADAPTERS.build(dict(type='PolyhistorLite', reduction_factor=3)).adapt(model)
    message = str(err.value)  # widths 16 ... 128: bottlenecks 5, 10, 21, 42 (not 20, 40)
    assert '\n' not in message and message.startswith('PolyhistorLite: layers.2.blocks.0.attn')
    assert message.endswith('choose a reduction_factor that divides every width')
    assert [n for n, _ in model.backbone.named_modules()] == before
    assert model.backbone.streams.tasks is None


def test_a_hypernetwork_strategy_cannot_be_wrapped_per_task_nor_share_streams():
    with pytest.raises(StrategyError, match='^PerTask: HyperFormer gives the tasks streams'):
        build(dict(type='PerTask', strategy=dict(type='HyperFormer')))
    with pytest.raises(StrategyError, match='^Polyhistor: the backbone has task streams'):
        build([dict(type='HyperFormer', **SMALL), dict(type='Polyhistor', **SMALL)])
