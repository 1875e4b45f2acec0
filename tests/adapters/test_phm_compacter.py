"""PHM adapters, Compacter, Compacter++ and low-rank adapters: the forward against the papers'
formulas written out here (explicit Kronecker products and rank-one sums), the shared rules,
the initialisation, the counts at paper size and the bad options."""
import math
import os.path as osp
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from adapterkit import build_model, count_parameters, load_config
from tolerance import assert_identity, assert_within, gamma

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
STAGES = 4  # the tiny Swin of conftest: one block per stage, widths 16, 32, 64, 128
SUBLAYERS = {'houlsby': ('attn', 'mlp'), 'pfeiffer': ('mlp',)}


# ------------------------------------------------------------------ the formulas, by hand
def gelu(x, approximate='none'):
    if approximate == 'tanh':
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def kron_sum(rules, blocks):
    """H = sum_i A_i (x) B_i."""
    return sum(torch.kron(rules[i], blocks[i]) for i in range(len(rules)))


def rank_sum(left, right):
    """L R as a sum of outer products of L's columns and R's rows."""
    return sum(torch.outer(left[:, j], right[j]) for j in range(left.shape[1]))


def projection(params, prefix, rule):
    """Weight (in x out) and bias of the projection whose parameters start with ``prefix``:
    PHM (full B_i), LPHM (B_i = L_i R_i) or low-rank (W = W_L W_R)."""
    if rule is None:
        weight = rank_sum(params[prefix + 'weight_left'], params[prefix + 'weight_right'])
    elif prefix + 'weight' in params:
        weight = kron_sum(rule, params[prefix + 'weight'])
    else:
        weight = kron_sum(rule, [rank_sum(left, right) for left, right in
                                 zip(params[prefix + 'weight_left'],
                                     params[prefix + 'weight_right'])])
    return weight, params[prefix + 'bias']


class Oracle:
    """Hooks on a plain Swin that add ``out + U(act(D out))`` after each sublayer, with D and
    U built from the adapted model's parameters by the formulas above, in float64. Where
    the rules are shared, every layer gets a copy of its own (``copies``) so that their
    gradients can be summed by hand."""

    def __init__(self, adapted, case, plain):
        self.child, self.scope = case['child'], case.get('share_rule')
        self.act = 'tanh' if case['adapter'].get('activation') == 'gelu_tanh' else 'none'
        self.params = {n: p.detach().double()
                       for n, p in adapted.backbone.named_parameters()}
        self.copies = {}
        for name in expected_sublayers(case):
            plain.backbone.get_submodule(name).register_forward_hook(self.hook(name))

    def rule(self, name, projection_name):
        if self.scope is None:  # low-rank adapters have no rules
            return None
        if self.scope == 'layer':
            return self.params[f'{name}.{self.child}.{projection_name}.rule']
        group = 0 if self.scope == 'model' else int(name.split('.')[1])
        copy = self.params[f'{self.child}.rule'][group].clone().requires_grad_(True)
        self.copies[(name, projection_name)] = (group, copy)
        return copy

    def hook(self, name):
        prefix = f'{name}.{self.child}.'
        down = projection(self.params, prefix + 'down.', self.rule(name, 'down'))
        up = projection(self.params, prefix + 'up.', self.rule(name, 'up'))

        def adapt(module, args, out):
            hidden = gelu(out @ down[0] + down[1], self.act)
            return out + hidden @ up[0] + up[1]
        return adapt


CASES = {
    'phm': dict(adapter=dict(type='PHMAdapter', phm_dim=4), child='phm_adapter',
                share_rule='layer', placement='houlsby'),
    'phm-rank2-stage': dict(adapter=dict(type='PHMAdapter', phm_dim=2, rank=2,
                                         share_rule='stage'),
                            child='phm_adapter', share_rule='stage', placement='houlsby'),
    'compacter': dict(adapter=dict(type='Compacter'), child='compacter', share_rule='model',
                      placement='houlsby'),
    'compacter-stage-tanh': dict(adapter=dict(type='Compacter', share_rule='stage',
                                              activation='gelu_tanh'),
                                 child='compacter', share_rule='stage', placement='houlsby'),
    'compacter++': dict(adapter=dict(type='CompacterPlusPlus', phm_dim=2),
                        child='compacter_pp', share_rule='model', placement='pfeiffer'),
    'low-rank': dict(adapter=dict(type='LowRankAdapter', rank=3), child='low_rank_adapter',
                     placement='houlsby'),
}


def expected_sublayers(case):
    return [f'layers.{i}.blocks.0.{s}' for i in range(STAGES)
            for s in SUBLAYERS[case['placement']]]


def models(tiny_model, case):
    """The adapted tiny model with every trainable tensor drawn at random (far from the
    near-zero initial rules), and a plain one with the same backbone weights."""
    torch.manual_seed(0)
    adapted = tiny_model(case['adapter']).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in adapted.backbone.parameters():
            if param.requires_grad:
                param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    plain = tiny_model(dict(type='DecoderOnly')).eval()
    own = plain.backbone.state_dict()
    plain.backbone.load_state_dict({k: v for k, v in adapted.backbone.state_dict().items()
                                    if k in own})
    return adapted, plain.double()


@pytest.fixture(scope='module')
def image():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize('case', CASES.values(), ids=list(CASES))
def test_forward_equals_the_formula_written_out(tiny_model, case, image):
    adapted, plain = models(tiny_model, case)
    child = case['child']
    # the backbone itself ('') holds shared rules under the same name
    assert sorted(n for n, m in adapted.backbone.named_modules() if n and hasattr(m, child)) \
        == sorted(expected_sublayers(case))
    with torch.no_grad():
        unadapted = plain.backbone.forward_features(image.double())
        Oracle(adapted, case, plain)
        want = plain.backbone.forward_features(image.double())
        got = adapted.backbone.forward_features(image)
    for tap, (g, w, u) in enumerate(zip(got, want, unadapted)):
        scale = w.abs().max()
        # the adapters really move every tap (by more than 10% of its scale) ...
        assert (w - u).abs().max() > 0.1 * scale, tap
        # ... and fp32 lies within float32 rounding of the float64 formula: gamma(n) max|tap|,
        # n = 2^13 > the ~5,300 terms summed along a path: per block 11C + 48 and its
        # two adapters' 4C, per merge 12C, widths C of 16-128 (docs/testing.md)
        assert_within(g, w, gamma(2 ** 13, torch.float32) * scale, f'tap {tap}')


@pytest.mark.parametrize('share_rule', ['model', 'stage'])
def test_one_rule_tensor_serves_its_layers_and_gathers_all_their_gradients(tiny_model,
                                                                           share_rule, image):
    case = dict(CASES['compacter'], adapter=dict(type='Compacter', share_rule=share_rule),
                share_rule=share_rule)
    adapted, plain = models(tiny_model, case)
    groups = 1 if share_rule == 'model' else STAGES
    rules = {n: p for n, p in adapted.backbone.named_parameters() if n.endswith('rule')}
    assert list(rules) == ['compacter.rule'] and rules['compacter.rule'].shape == (groups,
                                                                                   4, 4, 4)
    adapted.double()
    oracle = Oracle(adapted, case, plain)
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64)
               for t in plain.backbone.forward_features(image.double())]

    def loss(model):
        taps = model.backbone.forward_features(image.double())
        return sum((t * w).sum() for t, w in zip(taps, weights))

    loss(adapted).backward()
    loss(plain).backward()
    by_hand = torch.zeros(groups, 4, 4, 4, dtype=torch.float64)
    assert len(oracle.copies) == 2 * len(expected_sublayers(case))  # down and up of each
    for group, copy in oracle.copies.values():
        assert copy.grad.abs().max() > 0  # every layer contributes
        by_hand[group] += copy.grad
    got = adapted.backbone.compacter.rule.grad
    assert_identity(got, by_hand, 'rule gradient')


def test_initialisation_is_the_authors(tiny_model):
    torch.manual_seed(0)
    compacter = tiny_model(dict(type='Compacter')).backbone
    rule = compacter.compacter.rule
    assert 0.5e-4 < rule.std().item() < 2e-4  # N(0, 1e-4^2), 64 draws
    phm = tiny_model(dict(type='PHMAdapter')).backbone
    rules = torch.cat([p.flatten() for n, p in phm.named_parameters() if n.endswith('.rule')])
    assert 0.008 < rules.std().item() < 0.012  # N(0, 0.01^2) per layer, 1,024 draws
    for backbone in (compacter, phm, tiny_model(dict(type='LowRankAdapter')).backbone):
        for name, param in backbone.named_parameters():
            if name.endswith('.bias') and param.requires_grad:
                assert torch.equal(param, torch.zeros_like(param)), name
            if 'weight' in name.rsplit('.', 1)[-1] and param.requires_grad:
                # Xavier-uniform with gain sqrt(2) on every 2-D slice
                fan_in, fan_out = param.shape[-1], param.shape[-2]
                bound = math.sqrt(2) * math.sqrt(6 / (fan_in + fan_out))
                assert 0 < param.abs().max() <= bound, name


def test_presets_stack_with_a_plain_adapter_on_the_same_sublayers(tiny_model):
    model = tiny_model([dict(type='Adapter'), dict(type='Compacter', placement='pfeiffer')])
    mlp = model.backbone.layers[1].blocks[0].mlp
    assert hasattr(mlp, 'adapter') and hasattr(mlp, 'compacter')
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == set(model.adapters[0].trained_names) | set(
        model.adapters[1].trained_names)
    assert 'compacter.rule' in trainable and 'layers.1.blocks.0.mlp.adapter.up.weight' in \
        trainable


# ------------------------------------------------------------------ counts at paper size
SWIN_T = ((96, 2), (192, 2), (384, 6), (768, 2))  # (width d, blocks) per stage
DECODERS = 1_946_624


def per_adapter_sum(per_adapter, positions, rho=4):
    """Sum of ``per_adapter(d, k)`` over Swin-T's adapters, k = d / rho."""
    return sum(blocks * positions * per_adapter(d, d // rho) for d, blocks in SWIN_T)


@pytest.mark.parametrize('config, added, formula', [
    # PHM: 2dk/n + 2n^3 + d + k per adapter (every PHM layer its own n x n x n rules), n = 4
    ('phm/phm-adapter_swin-t_pascal-448.py', 553_248,
     per_adapter_sum(lambda d, k: 2 * d * k // 4 + 2 * 4 ** 3 + d + k, positions=2)),
    # Compacter: (2r + 1)(d + k) per adapter, r = 1, and one n^3 rule tensor
    ('compacter/compacter_swin-t_pascal-448.py', 33_184,
     per_adapter_sum(lambda d, k: 3 * (d + k), positions=2) + 4 ** 3),
    ('compacter/compacter-plusplus_swin-t_pascal-448.py', 16_624,
     per_adapter_sum(lambda d, k: 3 * (d + k), positions=1) + 4 ** 3),
    # low-rank: (2r + 1)(d + k) per adapter, r = 1
    ('low_rank_adapter/low-rank-adapter_swin-t_r1_pascal-448.py', 33_120,
     per_adapter_sum(lambda d, k: 3 * (d + k), positions=2)),
])
def test_counts_on_swin_t_448_are_the_documented_formulas(config, added, formula):
    assert formula == added
    with torch.device('meta'):
        counts = count_parameters(build_model(load_config(str(CONFIGS / config))))
    assert counts['backbone_adapter'] == added
    assert counts['trainable'] == DECODERS + added and counts['backbone_unfrozen'] == 0


# ------------------------------------------------------------------ bad options
@pytest.mark.parametrize('adapter, message', [
    (dict(type='PHMAdapter', phm_dim=3),
     r'^PHMAdapter: phm_dim=3 does not divide the width 16 of layers\.0\.blocks\.0\.attn;'),
    (dict(type='Compacter', reduction_factor=[4, 4, 3, 4]),
     r'^Compacter: phm_dim=4 does not divide the bottleneck width 21 of '
     r'layers\.2\.blocks\.0\.attn;'),
    (dict(type='Compacter', share_rule='block'),
     r"^Compacter: unknown share_rule 'block' \(choose from layer, stage, model\)$"),
    (dict(type='CompacterPlusPlus', rank=0), r'^CompacterPlusPlus: rank must be a positive'),
    (dict(type='PHMAdapter', phm_dim=0), r'^PHMAdapter: phm_dim must be a positive integer'),
    (dict(type='LowRankAdapter', rank=1.5), r'^LowRankAdapter: rank must be a positive'),
    (dict(type='LowRankAdapter', activation='relu'),
     r"^LowRankAdapter: unknown activation 'relu' \(choose from gelu, gelu_tanh\)$"),
    ([dict(type='Compacter', placement='pfeiffer'),
      dict(type='Compacter', targets=r'layers\.\d+\.blocks\.\d+\.attn')],
     r"^Compacter: the backbone has shared rules 'compacter' already; apply Compacter once$"),
])
def test_bad_options_are_one_clear_error(tiny_model, adapter, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(adapter)


# ------------------------------------------------------------------ through the CLI
def test_compacter_quickstart_resumes_and_exports_its_shared_rule(cli, data_options,
                                                                 synth_root, tmp_path):
    """Training, evaluation and the export refusal of every quickstart are walked in
    tests/test_strategy_configs.py; here the one tensor outside the blocks (the shared rule)
    goes through a resume and an adapter-only export."""
    config = 'configs/quickstart/compacter_swin-mini_synthetic-128.py'
    pretrained = str(tmp_path / 'swin_mini.pth')
    torch.manual_seed(0)
    torch.save(timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                                 num_classes=0, img_size=128, embed_dim=32,
                                 depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                 window_size=4).state_dict(), pretrained)
    work_dir = str(tmp_path / 'run')
    options = [f'model.backbone.pretrained={pretrained}', 'train_cfg.val_interval=100']
    cli('train', config, '--work-dir', work_dir, *data_options(synth_root, 2), *options)
    proc = cli('train', config, '--work-dir', work_dir, '--resume',
               *data_options(synth_root, 3), *options)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr

    def rule(iteration):
        state = torch.load(osp.join(work_dir, f'iter_{iteration}.pth'), weights_only=False)
        return state['state_dict']['backbone.compacter.rule']
    assert rule(3).shape == (1, 4, 4, 4) and not torch.equal(rule(3), rule(2))

    out = str(tmp_path / 'compacter.safetensors')
    cli('export', config, osp.join(work_dir, 'iter_3.pth'), out, '--adapter-only',
        *data_options(synth_root, 3), *options)
    saved = load_file(out)
    assert torch.equal(saved['backbone.compacter.rule'], rule(3))
    assert all(k.startswith(('backbone.compacter.', 'heads.')) or '.compacter.' in k
               for k in saved)
