"""The strategy contract, checked for every strategy in ``ADAPTERS``: adapterkit's own and
those of the installed plugins.

Every registered strategy needs a row in ``CASES`` (small construction options, and the
options of its that take target patterns); a strategy without one fails here, so no
strategy skips the contract. Each row runs on a small Swin (2 blocks per stage, width 16,
64 px) loaded from a "pretrained" file of random weights, with every trainable tensor moved
away from its initial value (zero up-projections included), so every delta is real:

- it trains exactly what it reports, and what it injects carries its own prefix;
- an optimizer step leaves every frozen tensor bitwise unchanged;
- its adapter-only file restores the same outputs in a freshly built model;
- merging gives the unmerged outputs and unmerging the weights back, or it refuses with
  ``NotMergeableError`` and its reason;
- composed with BitFit it trains the union;
- a pattern that matches nothing, and a second apply, are one clear error each, raised
  before the model changes.

What only one method does stays in that method's own test file.
"""
import copy
import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Dict, Tuple

import pytest
import timm
import torch
from mmengine.optim import build_optim_wrapper
from safetensors.torch import load_file
from tolerance import assert_identity

from adapterkit import build_model
from adapterkit.adapters import SWIN_BLOCK_LINEARS, NotMergeableError
from adapterkit.engine.bench import random_targets
from adapterkit.models.checkpoint import file_sha256, load_adapter, read_metadata, save_adapter
from adapterkit.plugins import load_plugins
from adapterkit.registry import ADAPTERS

NOTHING = r'layers\.9\.nothing'  # a pattern no Swin name fullmatches


@dataclass
class Case:
    """One strategy's row: ``options`` build it small; each of ``no_match`` (merged over
    ``options``) sets one of its pattern options to a pattern that matches nothing."""

    options: dict = field(default_factory=dict)
    no_match: Tuple[dict, ...] = (dict(trainable=NOTHING),)


CASES: Dict[str, Case] = {
    'Full': Case(),
    'DecoderOnly': Case(),
    'BitFit': Case(),
    'LoRA': Case(dict(rank=2, dropout=0.1, trainable=['norms'],
                      targets=['patch_embed.proj', SWIN_BLOCK_LINEARS]),
                 (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'Adapter': Case(dict(reduction_factor=4),
                    (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'PHMAdapter': Case(dict(phm_dim=2, activation='gelu_tanh'),
                       (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'Compacter': Case(dict(phm_dim=2, rank=2), (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'CompacterPlusPlus': Case(dict(phm_dim=4, share_rule='stage'),
                              (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'LowRankAdapter': Case(dict(rank=2), (dict(targets=NOTHING), dict(trainable=NOTHING))),
    'MTLoRA': Case(dict(rank=2, task_rank=3, scale=2.0, dropout=0.05, plus=True,
                        trainable_scales=True)),
    'DoRA': Case(dict(rank=2, alpha=4.0), (dict(targets=NOTHING), dict(trainable=NOTHING))),
    # per task: injected tensors (LoRA's, with its dropout under vmap) and unfrozen
    # pretrained ones (the position-bias tables)
    'PerTask': Case(dict(strategy=dict(type='LoRA', rank=2, dropout=0.1,
                                       trainable=['relative_position_bias']))),
    'VPT': Case(dict(num_tokens=3, deep=True, dropout=0.1)),
    # hypernetwork-generated adapters, every task its own stream
    'HyperFormer': Case(dict(task_dim=8, hidden_dim=16)),
    'Polyhistor': Case(dict(task_dim=8, hidden_dim=16, rank=2)),
    'PolyhistorLite': Case(dict(task_dim=8, hidden_dim=16, rank=2)),
    # the plugin of plugins/adapterkit-tadformer (task prompts, streams born in last blocks)
    'TADFormer': Case(dict(rank=2, dropout=0.1, filter='dynamic')),
}

load_plugins()  # their strategies join the walk
ADAPTERS.import_from_location()
STRATEGIES = sorted(ADAPTERS.module_dict)

SWIN = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
            window_size=4)
TASKS = ('semseg', 'normals')


def row(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f'strategy {name} has no row in CASES of {__file__}: add one (see '
                    f'docs/adding_a_method.md)')
    return CASES[name]


def adapter(name: str, **options) -> dict:
    return dict(type=name, **{**row(name).options, **options})


def trainable(model) -> set:
    return {n for n, p in model.backbone.named_parameters() if p.requires_grad}


def injected(model) -> set:
    return {n for n, _ in model.backbone.named_parameters()} - model.backbone_base_params


def local_name(model, name: str) -> str:
    """``name`` after the longest pretrained module path it starts with: the part a
    strategy added (``lora_A``, ``adapter.down.weight``)."""
    parts = name.split('.')
    modules = {'.'.join(p.split('.')[:i]) for p in model.backbone_base_params
               for i in range(1, p.count('.') + 1)}
    cut = max(i for i in range(len(parts)) if i == 0 or '.'.join(parts[:i]) in modules)
    return '.'.join(parts[cut:])


def snapshot(model) -> tuple:
    """Everything an apply could change: tensors, module types, hooks, what trains."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: (type(m), len(m._forward_hooks)) for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()})


def assert_unchanged(model, before: tuple) -> None:
    state, modules, grads = snapshot(model)
    assert (modules, grads) == before[1:]
    assert state.keys() == before[0].keys()
    assert all(torch.equal(v, before[0][k]) for k, v in state.items())


def outputs(model, x):
    with torch.no_grad():
        return model(x)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A "pretrained" small Swin in timm's layout, random weights."""
    torch.manual_seed(0)
    swin = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                             num_classes=0, **SWIN)
    path = tmp_path_factory.mktemp('pretrained') / 'swin.pth'
    torch.save(swin.state_dict(), path)
    return str(path)


@pytest.fixture(scope='module')
def build(pretrained):
    """``build(adapter, seed)``: the small model, pretrained weights loaded, in eval mode."""
    def build(adapter, seed=0):
        torch.manual_seed(seed)
        model = build_model(dict(type='MultiTaskModel', tasks=list(TASKS), adapter=adapter,
                                 backbone=dict(type='SwinBackbone', pretrained=pretrained,
                                               **SWIN),
                                 head=dict(type='HRNetHead')))
        model.init_weights()  # loads the pretrained file, as the Runner does
        return model.eval()
    return build


@pytest.fixture(scope='module', params=STRATEGIES)
def name(request):
    return request.param


def as_trained(model):
    """Move every trainable tensor and every BatchNorm statistic, as training would (zero
    up-projections included, so every delta is real)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=gen))
        for module in model.heads.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
    return model


def assert_file_restores(model, adapters, build, x, folder) -> None:
    """The adapter-only file of ``model`` holds exactly what trains (and the heads'
    buffers), and loaded into a fresh model of the same ``adapters`` gives its outputs."""
    path = str(folder / 'adapter.safetensors')
    save_adapter(model, path, config_text='# the config')
    metadata = read_metadata(path)
    assert metadata == {'adapterkit_format': 'adapter-only', 'config': '# the config',
                        'base_file': metadata['base_file'],
                        'base_sha256': file_sha256(model.backbone.pretrained)}
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(load_file(path)) == trains | {n for n, _ in model.heads.named_buffers('heads')}
    fresh = build(adapters, seed=1)  # other random heads and adapters until loaded
    load_adapter(fresh, path)
    want, got = outputs(model, x), outputs(fresh, x)
    assert all(torch.equal(got[task], want[task]) for task in TASKS)


@pytest.fixture(scope='module')
def trained(name, build):
    """The strategy's model as if trained (``as_trained``)."""
    return as_trained(build(adapter(name)))


@pytest.fixture(scope='module')
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


# ------------------------------------------------------------------ the table
def test_every_registered_strategy_has_a_row():
    missing = [name for name in STRATEGIES if name not in CASES]
    assert not missing, (f'no row in CASES for {", ".join(missing)}: every registered '
                         f'strategy joins the contract (docs/adding_a_method.md)')


def test_a_strategy_with_targets_has_a_row_that_misses_them():
    for name in STRATEGIES:
        if 'targets' in inspect.signature(ADAPTERS.get(name)).parameters:
            assert any('targets' in options for options in row(name).no_match), name


def test_no_prefix_of_one_strategy_begins_another_strategy_prefix():
    prefixes = {name: ADAPTERS.get(name).prefixes for name in STRATEGIES}
    clashes = [(a, pa, b, pb) for a, b in itertools.permutations(prefixes, 2)
               for pa in prefixes[a] for pb in prefixes[b] if pb.startswith(pa)]
    assert clashes == []


# ------------------------------------------------------------------ per strategy
def test_trains_exactly_what_it_reports_and_names_it_with_its_prefix(name, trained):
    strategy = trained.adapters[0]
    assert trainable(trained) == set(strategy.trained_names)
    assert set(strategy.trainable_state_dict(trained)) == set(strategy.trained_names)
    assert all(p.requires_grad for p in trained.heads.parameters())
    prefixes = strategy.prefixes  # a wrapper (PerTask) adds the prefixes of what it wraps
    strays = [n for n in injected(trained) if not local_name(trained, n).startswith(prefixes)]
    assert strays == [], f'{name} declares prefixes {prefixes}'


def test_an_optimizer_step_leaves_every_frozen_tensor_bitwise_unchanged(name, trained, x):
    model = copy.deepcopy(trained).train()
    optim = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05)))
    def tensors():  # buffers too: the ones timm does not save (position index, mask)
        return {n: t.detach().clone() for n, t in itertools.chain(model.named_parameters(),
                                                                   model.named_buffers())}

    before = tensors()
    targets = dict(gt=random_targets(model.tasks, len(x), x.shape[-1], 'cpu'))
    optim.update_params(sum(model(x, targets, mode='loss').values()))
    after = tensors()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    frozen += [n for n, _ in model.backbone.named_buffers(prefix='backbone')]
    assert [n for n in frozen if not torch.equal(after[n], before[n])] == []
    moved = {n for n, _ in model.named_parameters() if not torch.equal(after[n], before[n])}
    # not every trainable tensor need move: nothing reads MTLoRA's shared stream after the
    # last block of the last stage (every tap is a task stream), so that fc2's shared
    # factors get no gradient, as in the reference code
    assert moved <= {n for n, p in model.named_parameters() if p.requires_grad}
    assert not trainable(model) or {f'backbone.{n}' for n in trainable(model)} & moved


def test_its_adapter_only_file_restores_the_outputs_in_a_fresh_model(name, trained, build,
                                                                      x, tmp_path):
    assert_file_restores(trained, adapter(name), build, x, tmp_path)


def test_merge_keeps_the_outputs_and_unmerge_the_weights_or_it_refuses(name, trained, x):
    model = copy.deepcopy(trained)
    strategy = model.adapters[0]
    if not strategy.mergeable:
        before = snapshot(model)
        with pytest.raises(NotMergeableError) as refused:
            model.merge_adapters()
        assert strategy.not_mergeable_reason and str(refused.value) == (
            f'{name} cannot be merged into the backbone weights '
            f'({strategy.not_mergeable_reason})')
        assert_unchanged(model, before)
        return
    # In float64 both sides differ by rounding alone (tests/tolerance.py), while a delta
    # merged wrongly (the trainable tensors moved by 0.05) moves them by more than 10^-3.
    model.double()
    x = x.double()
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    unmerged = outputs(model, x)
    model.merge_adapters()
    merged = outputs(model, x)
    folded = strategy.adapted_layers(model)
    assert all(layer.merged for layer in folded if getattr(layer, 'foldable', True))
    for task in TASKS:
        assert_identity(merged[task], unmerged[task], task)
    model.unmerge_adapters()
    # unmerge subtracts (or, for DoRA, rescales) what merge added: a few roundings per weight
    for key, value in model.backbone.state_dict().items():
        if value.is_floating_point():
            assert_identity(value, weights[key], key)
        else:
            assert torch.equal(value, weights[key]), key


def test_composed_with_bitfit_it_trains_the_union_and_restores_from_its_file(name, trained,
                                                                            build, x, tmp_path):
    bitfit = trainable(build(dict(type='BitFit')))
    for order in ([adapter(name), dict(type='BitFit')], [dict(type='BitFit'), adapter(name)]):
        model = build(order)
        assert [type(s).__name__ for s in model.adapters] == [a['type'] for a in order]
        assert trainable(model) == trainable(trained) | bitfit
    assert_file_restores(as_trained(model), order, build, x, tmp_path)


def test_a_pattern_that_matches_nothing_is_one_error_before_the_model_changes(name, build):
    model = build(dict(type='DecoderOnly'))
    before = snapshot(model)
    for options in row(name).no_match:
        strategy = ADAPTERS.build(adapter(name, **options))
        with pytest.raises(ValueError) as err:
            strategy.adapt(model)
        message = str(err.value)
        assert '\n' not in message and re.search(
            f'^{name}: .*pattern {re.escape(repr(NOTHING))} matches no', message), message
        assert_unchanged(model, before)


def test_a_second_apply_is_one_error_before_the_model_changes(name, trained):
    """Or, for a strategy that injects nothing, changes nothing at all."""
    model = copy.deepcopy(trained)
    before = snapshot(model)
    for strategy in (ADAPTERS.build(adapter(name)), model.adapters[0]):
        if not injected(model):
            strategy.adapt(model)
        else:
            with pytest.raises(ValueError) as err:
                strategy.adapt(model)
            message = str(err.value)
            assert message.startswith(f'{name}') and '\n' not in message, message
        assert_unchanged(model, before)
