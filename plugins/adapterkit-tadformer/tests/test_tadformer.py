"""TADFormer's math, its counts and its converter.

The backbone's task pyramids are compared, in float64 to float64 rounding (adapterkit's
tests/tolerance.py), with an independent forward written here from the formulas: plain
loops over tasks, heads, windows and maps, reading the model's parameters by name.
"""
import re

import pytest
import torch
import torch.nn.functional as F
from tolerance import assert_identity

import adapterkit
from adapterkit import count_parameters
from adapterkit.cli import main
from adapterkit.plugins import load_plugins
from adapterkit_tadformer import TADFormer

TASKS = ('semseg', 'human_parts', 'sal')
SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(2, 2, 2, 2),
            num_heads=(1, 2, 2, 4), window_size=4)


MODEL = dict(type='MultiTaskModel', tasks=list(TASKS), backbone=SWIN, head=dict(type='HRNetHead'),
             adapter=dict(type='TADFormer', rank=3, scale=1.5))


def build(seed=0, **options):
    torch.manual_seed(seed)
    cfg = dict(MODEL, adapter=dict(MODEL['adapter'], **options))
    model = adapterkit.build_model(cfg).double().eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # every parameter away from its init (zero B, zero gates)
        for name, param in model.backbone.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.add_(0.3 * noise if 'norm' in name or name.endswith('gamma') else noise
                       / max(1, param.shape[-1]) ** 0.5)
    return model


# ------------------------------------------------------------- the independent forward
def lowrank(x, p, key, scale):
    """W x + b + s B A x of layer ``key``."""
    return (F.linear(x, p[key + '.weight'], p[key + '.bias'])
            + scale * x @ p[key + '.tad_lora_A'].T @ p[key + '.tad_lora_B'].T)


def task_filter(z, p, key, task, dynamic):
    """F_t on one map z (r, h, w): a depthwise 3x3 convolution, zero padding 1, channel by
    channel."""
    rank = z.shape[0]
    if dynamic:
        k = (p[key + '.tad_filter.kernel.weight'] @ z.mean((1, 2))
             + p[key + '.tad_filter.kernel.bias']).view(rank, 9)
        k = (k - k.mean(1, keepdim=True)) / (k.std(1, keepdim=True) + 1e-10)
        kernels = (k.flatten() * p[key + '.tad_filter.gamma']
                   + p[key + '.tad_filter.beta']).view(rank, 3, 3)
        biases = torch.zeros(rank, dtype=z.dtype)
    else:
        kernels = p[f'{key}.tad_filter.{task}.weight'][:, 0]
        biases = p[f'{key}.tad_filter.{task}.bias']
    padded = F.pad(z, (1, 1, 1, 1))
    out = torch.zeros_like(z)
    for c in range(rank):
        for di in range(3):
            for dj in range(3):
                out[c] += kernels[c, di, dj] * padded[c, di:di + z.shape[1], dj:dj + z.shape[2]]
        out[c] += biases[c]
    return out


def task_layer(x_base, u, p, key, task, hw, scale, dynamic):
    """W x_base + b + s B F_t(A u) for maps (M, h*w, C), one map at a time."""
    out = []
    for base_rows, rows in zip(x_base, u):
        low = rows @ p[key + '.tad_lora_A'].T  # (h*w, r), row-major tokens
        low = task_filter(low.T.reshape(-1, *hw), p, key, task, dynamic).reshape(len(low.T), -1).T
        out.append(F.linear(base_rows, p[key + '.weight'], p[key + '.bias'])
                   + scale * low @ p[key + '.tad_lora_B'].T)
    return torch.stack(out)


def ln(x, p, key):
    return F.layer_norm(x, x.shape[-1:], p[key + '.weight'], p[key + '.bias'])


def windows_of(x, ws):  # (H, W, C) -> [(N, C)] row-major windows
    return [x[i:i + ws, j:j + ws].reshape(ws * ws, -1)
            for i in range(0, x.shape[0], ws) for j in range(0, x.shape[1], ws)]


def image_of(wins, h, w, ws):
    x = torch.zeros(h, w, wins[0].shape[-1], dtype=wins[0].dtype)
    k = 0
    for i in range(0, h, ws):
        for j in range(0, w, ws):
            x[i:i + ws, j:j + ws] = wins[k].reshape(ws, ws, -1)
            k += 1
    return x


def block_forward(z, prompts, p, key, blk, scale, ta, update, options):
    """One block on one image: z (H, W, C), prompts (T, C)."""
    h, w, c = z.shape
    ws, shift, heads = blk.window_size[0], blk.shift_size[0], blk.attn.num_heads
    d, count = c // heads, len(prompts)
    bias = blk.attn._get_rel_pos_bias()[0]  # (heads, N, N)
    mask = blk.attn_mask
    xn = torch.roll(ln(z, p, key + '.norm1'), (-shift, -shift), (0, 1))
    pn = ln(prompts, p, key + '.norm1')
    outs, prompt_outs, o_wins, raw_wins = [], [], [], []
    for k, win in enumerate(windows_of(xn, ws)):
        seq = torch.cat([pn, win])
        qkv = lowrank(seq, p, key + '.attn.qkv', scale).view(len(seq), 3, heads, d)
        o, raws = torch.zeros(len(seq), c, dtype=z.dtype), []
        for head in range(heads):
            q, kk, v = qkv[:, 0, head], qkv[:, 1, head], qkv[:, 2, head]
            raw = q @ kk.T
            logits = raw * d ** -0.5
            logits[count:, count:] += bias[head] + (0 if mask is None else mask[k])
            o[:, head * d:(head + 1) * d] = logits.softmax(-1) @ v
            raws.append(raw[:count, count:])
        y = lowrank(o, p, key + '.attn.proj', scale)
        outs.append(y[count:])
        prompt_outs.append(y[:count])
        o_wins.append(o[count:])
        raw_wins.append(torch.stack(raws))  # (heads, T, N)

    def to_image(wins):
        return torch.roll(image_of(wins, h, w, ws), (shift, shift), (0, 1))
    a = z + to_image(outs)
    x2 = ln(a, p, key + '.norm2')
    hidden = F.gelu(lowrank(x2, p, key + '.mlp.fc1', scale))
    out = a + lowrank(hidden, p, key + '.mlp.fc2', scale)
    pooled = torch.stack(prompt_outs).mean(0)
    if update:
        mlp = lowrank(F.gelu(lowrank(ln(pooled, p, key + '.norm2'), p, key + '.mlp.fc1', scale)),
                      p, key + '.mlp.fc2', scale)
        pooled = prompts + mlp
    if not ta:
        return out, None, pooled
    tasks = []
    for t, task in enumerate(options['tasks']):
        modulated, inputs = [], []
        for o, raw in zip(o_wins, raw_wins):
            m = torch.zeros(c, ws * ws, dtype=z.dtype)  # channel-major, as the reference
            for ch in range(c):
                m[ch] = F.gelu(raw[ch // d, t]) * o[:, ch]
            modulated.append(m)
            inputs.append(ln(o + m.T, p, key + '.attn.proj.tad_prompt_norm'))
        proj = task_layer(torch.stack(o_wins), torch.stack(inputs), p, key + '.attn.proj',
                          task, (ws, ws), scale, options['dynamic'])
        a_t = z + to_image(list(proj))
        f1 = task_layer(x2.reshape(1, h * w, c), ln(a_t, p, key + '.norm2').reshape(1, h * w, c),
                        p, key + '.mlp.fc1', task, (h, w), scale, options['dynamic'])
        f2 = task_layer(hidden.reshape(1, h * w, -1), F.gelu(f1), p, key + '.mlp.fc2', task,
                        (h, w), scale, options['dynamic'])
        out_t = a_t + f2.view(h, w, c)
        if options['layout'] == 'reference':  # m's memory read as (N, C)
            skip = to_image([m.reshape(ws * ws, c) for m in modulated])
        else:
            skip = to_image([m.T for m in modulated])
        g = torch.sigmoid(p[key + '.tad_gate']) if options['skip'] == 'gated' else 0.5
        tasks.append(g * skip + (1 - g) * out_t)
    return out, tasks, pooled


def merge_map(x, p, key):
    """Swin's PatchMerging of one map (H, W, C)."""
    x = torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)
    return F.linear(ln(x, p, key + '.norm'), p[key + '.reduction.weight'])


def independent_pyramids(model, images, dynamic, layout='reference', skip='gated'):
    backbone = model.backbone
    p = dict(backbone.named_parameters())
    scale = model.adapters[0].scale[0]
    options = dict(tasks=list(model.tasks), dynamic=dynamic, layout=layout, skip=skip)
    pyramids = {task: [] for task in model.tasks}
    for image in images:
        z = backbone.patch_embed(image[None])[0]  # (H, W, C), timm's own patch embedding
        prompts = p['tad_prompts']
        taps = {task: [] for task in model.tasks}
        for i, stage in enumerate(backbone.layers):
            if i:
                key = f'layers.{i}.downsample'
                z, prompts = merge_map(z, p, key), prompts @ p[key + '.tad_prompts_up.weight'].T
                for task in model.tasks:
                    taps[task].append(merge_map(streams[task], p, key))
            for j, blk in enumerate(stage.blocks):
                last = j == len(stage.blocks) - 1
                z, tasks, prompts = block_forward(
                    z, prompts, p, f'layers.{i}.blocks.{j}', blk, scale, last,
                    not (last and i == 3), options)
            streams = dict(zip(model.tasks, tasks))
        for task in model.tasks:
            taps[task].append(streams[task])
            pyramids[task].append([m.permute(2, 0, 1) for m in taps[task]])
    return {task: [torch.stack(level) for level in zip(*maps)]
            for task, maps in pyramids.items()}


@pytest.mark.parametrize('options', [dict(filter='static'), dict(filter='dynamic'),
                                     dict(filter='static', skip_layout='fixed', skip='mean')],
                         ids=['static', 'dynamic', 'fixed-layout-mean-skip'])
def test_task_pyramids_equal_the_formulas_computed_by_loops(options):
    model = build(**options)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5),
                         dtype=torch.float64)
    with torch.no_grad():
        got = model.backbone(images, list(TASKS))
        want = independent_pyramids(model, images, options['filter'] == 'dynamic',
                                    options.get('skip_layout', 'reference'),
                                    options.get('skip', 'gated'))
    for task in TASKS:
        for level, (g, w) in enumerate(zip(got[task], want[task])):
            assert_identity(g, w, f'{task} tap {level}')


def test_the_stage_skip_reads_the_channel_major_map_unlike_its_transpose():
    # the reference's layout bug is reproduced, and it matters: the two layouts differ
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6),
                         dtype=torch.float64)
    with torch.no_grad():
        reference = build(skip_layout='reference').backbone(images, list(TASKS))
        fixed = build(skip_layout='fixed').backbone(images, list(TASKS))
    assert (reference['sal'][0] - fixed['sal'][0]).abs().max() > 1e-3


# ------------------------------------------------------------- counts
STATIC = {16: 3_532_350, 32: 4_670_526, 64: 6_946_878}
DYNAMIC = {16: 3_557_502, 32: 4_776_126, 64: 7_379_262}


@pytest.mark.parametrize('kind', ['static', 'dynamic'])
def test_swin_t_448_counts_equal_the_authors_code_for_every_rank(kind):
    for rank in (16, 32, 64):
        config = f'tadformer::tadformer-{kind}_swin-t_r{rank}_pascal-448.py'
        with torch.device('meta'):
            model = adapterkit.build_model(adapterkit.load_config(config))
        counts = count_parameters(model)
        formula = (71_136 * rank if kind == 'static' else 108 * rank ** 2 + 70_980 * rank) \
            + 2_394_174
        want = (STATIC if kind == 'static' else DYNAMIC)[rank]
        assert counts['trainable'] == formula == want, config
        assert counts['decoders'] == 1_946_624


# ------------------------------------------------------------- strategy
def test_the_installed_plugin_registers_tadformer():
    plugin = next(p for p in load_plugins().plugins if p.name == 'tadformer')
    assert plugin.status == 'loaded', plugin.error
    assert ('ADAPTERS', 'TADFormer') in plugin.modules
    assert adapterkit.registry.ADAPTERS.get('TADFormer') is TADFormer


def test_merging_folds_only_the_layers_without_a_task_branch():
    model = build(filter='dynamic')
    images = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        want = model(images)
        model.merge_adapters()
        got = model(images)
    for task in TASKS:
        assert_identity(got[task], want[task], task)
    folded = {name for name, layer in model.backbone.named_modules()
              if getattr(layer, 'merged', False)}
    assert 'layers.0.blocks.1.attn.qkv' in folded and 'layers.0.blocks.0.mlp.fc2' in folded
    assert not folded & {'layers.0.blocks.1.attn.proj', 'layers.3.blocks.1.mlp.fc1'}


@pytest.mark.parametrize('option, value', [('filter', 'adaptive'), ('skip', 'sum'),
                                           ('skip_layout', 'transposed'), ('rank', [4, 4])])
def test_a_bad_option_is_one_line_naming_it(option, value):
    with pytest.raises(adapterkit.errors.StrategyError, match=f'TADFormer: {option} must be'):
        TADFormer(**{option: value})


# ------------------------------------------------------------- the converter

def to_reference_layout(model, order):
    """The model's state as the authors' code saves it, its tasks in ``order``."""
    out, gates = {}, {}
    for key, value in model.state_dict().items():
        key = re.sub(r'^backbone\.layers\.(\d+)\.downsample\.',
                     lambda m: f'backbone.layers.{int(m.group(1)) - 1}.downsample.', key)
        key = re.sub(r'\.(attn\.(qkv|proj)|mlp\.fc[12])\.(weight|bias)$', r'.\1.linear.\3', key)
        key = re.sub(r'\.tad_lora_([AB])$', r'.lora_shared_\1', key)
        key = key.replace('.tad_prompt_norm.', '.prompt_layernorm.')
        key = key.replace('.tad_prompts_up.', '.task_prompts_up.')
        key = re.sub(r'\.tad_filter\.kernel\.', '.lora_filter.conv.', key)
        key = re.sub(r'\.tad_filter\.gamma$', '.lora_filter.chan_FilterNorm.std', key)
        key = re.sub(r'\.tad_filter\.beta$', '.lora_filter.chan_FilterNorm.mean', key)
        key = re.sub(r'\.tad_filter\.(\w+)\.(weight|bias)$', r'.lora_filter.\1.conv2d.\2', key)
        key = re.sub(r'^heads\.(\w+)\.downsample\.(\d)\.', r'downsampler.\1.downsample_\2.', key)
        key = re.sub(r'^heads\.(\w+)\.last_layer\.', r'decoders.decoders.\1.last_layer.', key)
        gate = re.match(r'^backbone\.layers\.(\d+)\.blocks\.\d+\.tad_gate$', key)
        if gate:
            gates[f'backbone.layers.{gate.group(1)}.prompt_gate'] = value
            continue
        if key.endswith('lora_filter.conv.weight'):
            value = value[..., None, None]
        if key == 'backbone.tad_prompts':
            key, value = 'backbone.task_prompts', value[[TASKS.index(t) for t in order]]
        out[key] = value
    out.update(gates)
    for name, module in model.backbone.named_modules():
        for buffer in ('relative_position_index', 'attn_mask'):
            if getattr(module, buffer, None) is not None:
                out[f'backbone.{name}.{buffer}'] = getattr(module, buffer)
    return out


@pytest.mark.parametrize('kind', ['static', 'dynamic'])
def test_a_reference_checkpoint_loads_with_its_prompts_in_the_model_task_order(kind, tmp_path):
    source = build(seed=1, filter=kind)
    order = ['sal', 'semseg', 'human_parts']  # the reference's own order
    path = tmp_path / 'tadformer.pth'
    torch.save(dict(model=to_reference_layout(source, order), epoch=299,
                    config=dict(TASKS=order)), path)
    model = build(seed=2, filter=kind)
    model.load_state_dict(torch.load(path, weights_only=True))  # the whole file, strictly
    want = source.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, want[key]), key


def test_a_checkpoint_of_the_other_filter_is_refused_naming_the_fix(tmp_path):
    state = to_reference_layout(build(seed=1, filter='dynamic'), list(TASKS))
    with pytest.raises(adapterkit.errors.CheckpointError,
                       match="it has the dynamic filter, the model the static one: set the "
                             "strategy's filter='dynamic'"):
        build(seed=2).load_state_dict(state)


def test_adapterkit_convert_writes_a_checkpoint_that_load_from_takes(tmp_path, capsys):
    source = build(seed=1)
    ref = tmp_path / 'tadformer.pth'
    torch.save(dict(model=to_reference_layout(source, list(TASKS)), config=dict(TASKS=TASKS)),
               ref)
    config = tmp_path / 'tiny.py'
    config.write_text(f'default_scope = "adapterkit"\nmodel = {MODEL!r}\n')
    out = tmp_path / 'converted.pth'
    assert main(['convert', str(config), str(ref), str(out)]) == 0
    assert 'in the layout of' in capsys.readouterr().out
    model = build(seed=2)
    model.load_state_dict(torch.load(out, weights_only=False)['state_dict'])
    want = source.state_dict()
    assert all(torch.equal(value, want[key]) for key, value in model.state_dict().items())
