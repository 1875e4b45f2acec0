"""The MTLoRA strategy: exact trainable counts of the released configs, the trainable set,
MTLoRA+ freezing, initialisation, merging, and one clear error per config mistake. Merged
and unmerged models are compared in float64, to float64 rounding (tests/tolerance.py)."""
import adapterkit  # noqa: F401  (installs the compat shims first)
import pytest
import torch
from mmengine.registry import init_default_scope
from tolerance import assert_identities, assert_identity

from adapterkit import build_model, count_parameters, load_config
from adapterkit.adapters import MTLoRA, MTLoRALinear
from adapterkit.registry import MODELS

DECODERS = 1_946_624  # the four HRNet heads of Swin-T
SWIN_T = 27_517_818  # the pretrained backbone without head and final norm
TASKS = ['semseg', 'human_parts', 'sal', 'normals']
MINI_SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
                 num_heads=(1, 2, 2, 4), window_size=4)


def mini_model(adapter, tasks=TASKS):
    init_default_scope('adapterkit')
    torch.manual_seed(0)
    return MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                             backbone=MINI_SWIN, head=dict(type='HRNetHead')))


def randomise_deltas(model):
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if '_B' in name or 'lora_norm' in name:
                param.add_(torch.randn_like(param) * 0.05)


@pytest.mark.parametrize('config, trainable', [
    ('mtlora/mtlora_swin-t_r16_pascal-448.py', 4_953_146),
    ('mtlora/mtlora_swin-t_r32_pascal-448.py', 6_083_642),
    ('mtlora/mtlora_swin-t_r64_pascal-448.py', 8_344_634),
    ('mtlora/mtlora-plus_swin-t_r4_pascal-448.py', 2_573_114),
    ('mtlora/mtlora-plus_swin-t_r8_pascal-448.py', 3_148_346),
    ('mtlora/mtlora-plus_swin-t_r16_pascal-448.py', 4_298_810),
    ('mtlora/mtlora-plus_swin-t_r16-ts4_pascal-448.py', 3_469_370),
    ('mtlora/mtlora-plus_swin-t_r32-ts4_pascal-448.py', 4_664_378),
    ('mtlora/mtlora-plus_swin-t_r64-ts4_pascal-448.py', 7_054_394),
])
def test_released_configs_train_exactly_the_reference_counts(config, trainable):
    with torch.device('meta'):  # counting needs shapes only
        counts = count_parameters(build_model(load_config(f'configs/{config}')))
    assert counts['trainable'] == trainable
    assert counts['decoders'] == DECODERS
    # the pretrained backbone is all there; MTLoRA only adds its low-rank parameters
    assert counts['total'] == SWIN_T + counts['backbone_adapter'] + DECODERS


def trainable_names(model):
    return {n for n, p in model.backbone.named_parameters() if p.requires_grad}


def test_mtlora_trains_the_reference_set():
    model = mini_model(dict(type='MTLoRA', rank=2, task_rank=1))
    names = {n for n, _ in model.backbone.named_parameters()}
    expected = {n for n in names if 'lora_' in n or 'norm' in n or n.startswith('patch_embed.')
                or n.endswith(('relative_position_bias_table', 'downsample.reduction.weight'))}
    assert trainable_names(model) == expected
    for n in names:  # the frozen biases and weights of the adapted linears
        if n.startswith('layers.') and n.endswith(('qkv.bias', 'proj.bias', 'fc1.bias',
                                                   'fc2.bias', 'fc1.weight')):
            assert n not in expected
    # task branches only in the last block of each stage, on proj, fc1 and fc2
    branched = {n.rsplit('.lora_tasks_A', 1)[0] for n in names if '.lora_tasks_A.' in n}
    assert branched == {f'layers.{i}.blocks.1.{m}' for i in range(4)
                        for m in ('attn.proj', 'mlp.fc1', 'mlp.fc2')}


def test_mtlora_plus_freezes_the_reductions_and_trains_their_bias_free_lora():
    model = mini_model(dict(type='MTLoRA', plus=True, rank=[1, 2, 3, 4], task_rank=1))
    trained = trainable_names(model)
    for i in (1, 2, 3):
        reduction = model.backbone.layers[i].downsample.reduction
        assert isinstance(reduction, MTLoRALinear) and reduction.bias is None
        assert not reduction.tasks  # no task branch
        assert not reduction.weight.requires_grad
        prefix = f'layers.{i}.downsample.reduction'
        assert {f'{prefix}.lora_shared_A', f'{prefix}.lora_shared_B'} <= trained
        assert f'{prefix}.weight' not in trained
        # the merge after stage i - 1 takes stage i - 1's rank
        assert reduction.lora_shared_A.shape == (i, reduction.in_features)


def test_at_step_0_every_task_sees_the_pretrained_network():
    plain = mini_model(dict(type='DecoderOnly')).double().eval()
    model = mini_model(dict(type='MTLoRA', rank=2, task_rank=2)).double().eval()
    model.backbone.load_state_dict(plain.backbone.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        want = plain.backbone(x, TASKS)[TASKS[0]]
        got = model.backbone(x, TASKS)
    for task in TASKS:
        assert_identities(got[task], want, task)


def test_trainable_scales_are_parameters_that_learn():
    model = mini_model(dict(type='MTLoRA', rank=2, task_rank=2, trainable_scales=True,
                            scale=3.0))
    proj = model.backbone.layers[0].blocks[1].attn.proj
    assert proj.lora_shared_scale.item() == 3.0
    assert proj.lora_task_scale['sal'].item() == 3.0  # task scales default to the shared one
    randomise_deltas(model)
    logits = model(torch.randn(1, 3, 64, 64))
    sum(v.sum() for v in logits.values()).backward()
    assert proj.lora_shared_scale.grad is not None and proj.lora_task_scale['sal'].grad.abs() > 0


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2', 'addition', 'lora_only'])
def test_merge_is_exact_and_unmerge_restores_the_weights(mode):
    model = mini_model(dict(type='MTLoRA', rank=3, task_rank=dict(semseg=1, human_parts=2,
                                                                  sal=3, normals=4),
                            plus=True, shared_mode=mode)).double().eval()
    randomise_deltas(model)
    weights = {n: p.clone() for n, p in model.backbone.named_parameters()}
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.merge_adapters()
        merged = model(x)
        model.unmerge_adapters()
    for task in TASKS:
        assert_identity(merged[task], unmerged[task], task)
    for name, param in model.backbone.named_parameters():
        assert_identity(param, weights[name], name)


@pytest.mark.parametrize('mode', ['matrix', 'matrixv2'])
def test_a_merged_backbone_and_its_task_branches_load_into_a_fresh_model(mode):
    adapter = dict(type='MTLoRA', rank=3, task_rank=2, shared_mode=mode)
    model = mini_model(adapter).double().eval()
    randomise_deltas(model)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        want = model(x)
    model.merge_adapters()
    layers = {n: m for n, m in model.backbone.named_modules() if isinstance(m, MTLoRALinear)}
    # matrix: a layer with task branches keeps W, its task outputs need W x + b itself
    assert all(layer.merged == (not layer.tasks or mode == 'matrixv2')
               for layer in layers.values())
    base = model.backbone_base_params
    state = {k: v for k, v in model.backbone.state_dict().items() if k in base}
    state.update(model.adapters[0].merged_extra_state_dict(model))
    fresh = mini_model(adapter).double().eval()
    fresh.backbone.load_state_dict(state, strict=False)
    fresh.heads.load_state_dict(model.heads.state_dict())
    with torch.no_grad():
        got = fresh(x)
    for task in TASKS:
        assert_identity(got[task], want[task], task)


def test_merged_swin_t_at_448_predicts_what_the_unmerged_one_does():
    model = build_model(load_config('configs/mtlora/mtlora-plus_swin-t_r16-ts4_pascal-448.py',
                                    dict(model=dict(backbone=dict(pretrained=None)))))
    model.double().eval()
    randomise_deltas(model)
    x = torch.randn(1, 3, 448, 448, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.merge_adapters()
        merged = model(x)
    for task in TASKS:
        assert_identity(merged[task], unmerged[task], task)


@pytest.mark.parametrize('options, message', [
    (dict(rank=0), 'rank must be a positive integer or a list of 4'),
    (dict(rank=[4, 4, 4]), 'rank must be a positive integer or a list of 4'),
    (dict(dropout=1.5), 'dropout must be a number in [0, 1)'),
    (dict(task_rank=dict(semseg=2, sal='4')), 'task_rank.sal must be a positive integer'),
    (dict(shared_mode='matrix3'), "shared_mode must be one of"),
])
def test_config_mistakes_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(')', r'\)')):
        MTLoRA(**options)


def test_a_task_without_a_rank_is_named():
    with pytest.raises(ValueError, match="task_rank has no entry for task 'human_parts'"):
        mini_model(dict(type='MTLoRA', task_rank=dict(semseg=2, sal=2, normals=2)))


def test_only_a_swin_backbone_and_only_once():
    model = mini_model(dict(type='MTLoRA', rank=2, task_rank=2))
    with pytest.raises(ValueError, match='attn.qkv is already adapted'):
        MTLoRA().apply(model)
    model.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='MTLoRA adapts a 4-stage timm Swin V1 backbone'):
        MTLoRA().apply(model)
