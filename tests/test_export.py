"""Adapter-only checkpoints, merged exports and exact resumption, in process and by the CLI."""
import glob
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest
import timm
import torch
from safetensors.torch import load_file
from tolerance import assert_identity
from torch import nn

from adapterkit import build_model, load_config
from adapterkit.models.checkpoint import (load_adapter, merged_state_dict, read_metadata,
                                          save_adapter, save_merged)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4)
MINI = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4)  # quickstart
LORA_EVERYWHERE = dict(type='LoRA', rank=2, targets=[
    'patch_embed.proj', r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])'])
QUICKSTART_LORA = 'configs/quickstart/lora_swin-mini_synthetic-128.py'
REFERENCES = dict(semseg=50.0, human_parts=40.0, sal=60.0, normals=30.0)
TASKS = tuple(REFERENCES)
PANEL = (128, 3 * 128 + 2 * 4)  # image | ground truth | prediction, 4-pixel gaps


def timm_swin(img_size, **kwargs):
    return timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                             img_size=img_size, num_classes=0, **kwargs)


@pytest.fixture(scope='module')
def tiny_pretrained(tmp_path_factory):
    """A "pretrained" tiny Swin in timm's layout (final norm included), random weights."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('pretrained') / 'tiny_swin.pth'
    torch.save(timm_swin(64, **TINY).state_dict(), path)
    return str(path)


def perturb(model):
    """Move everything a training run moves: trainable tensors and BatchNorm statistics."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
        for module in model.heads.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)


def test_adapter_only_files_that_do_not_fit_are_refused(tiny_model, tiny_pretrained, tmp_path):
    path = str(tmp_path / 'lora_r2.safetensors')
    save_adapter(tiny_model(dict(type='LoRA', rank=2), pretrained=tiny_pretrained), path)
    other = tiny_model(dict(type='LoRA', rank=4), pretrained=tiny_pretrained)
    with pytest.raises(ValueError, match=r'lora_r2\.safetensors: does not fit the adapter-only '
                                         r'part of the model of the config: 32 shape mismatches '
                                         r'.*lora_A \(2, 16\) vs \(4, 16\)'):
        load_adapter(other, path)
    with pytest.raises(ValueError, match='model.backbone.pretrained is not set'):
        save_adapter(tiny_model(dict(type='LoRA', rank=2)), str(tmp_path / 'x.safetensors'))
    assert not osp.exists(tmp_path / 'x.safetensors')
    merged = str(tmp_path / 'merged.safetensors')
    save_merged(other, merged)
    with pytest.raises(ValueError, match='a merged export, not an adapter-only file'):
        load_adapter(other, merged)


def assert_same_state(state, before):
    for key, value in state.items():
        if value.is_floating_point():
            assert_identity(value, before[key], key)
        else:
            assert torch.equal(value, before[key]), key


def test_merged_export_is_a_plain_timm_swin(tiny_model, tiny_pretrained):
    """In float64, to float64 rounding (tests/tolerance.py)."""
    torch.manual_seed(0)
    model = tiny_model([LORA_EVERYWHERE, dict(type='BitFit')], pretrained=tiny_pretrained)
    model.init_weights()
    perturb(model)
    model.double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = merged_state_dict(model)
    assert_same_state(model.state_dict(), before)  # the model is left unmerged, as it was

    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    plain = timm_swin(64, **TINY).double().eval()
    assert plain.load_state_dict(backbone, strict=True)  # no missing or unexpected keys
    assert {k for k in state if not k.startswith('backbone.')} == set(model.heads.state_dict(
        prefix='heads.'))
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    plain.norm = nn.Identity()  # the taps never use the final norm (it stays untrained)
    with torch.no_grad():
        adapted = model.backbone.forward_features(x)[-1]
        merged = plain.forward_features(x).permute(0, 3, 1, 2)
    assert_identity(merged, adapted)


def test_swin_t_merge_at_448_matches_and_loads_into_timm():
    cfg = load_config(str(CONFIGS / 'lora/lora_swin-t_r4_pascal-448.py'))
    cfg.model.adapter = [cfg.model.adapter, dict(type='BitFit')]
    cfg.model.tasks = dict(semseg=dict())  # one head is enough to see the predictions
    torch.manual_seed(0)
    model = build_model(cfg).double().eval()  # float64: see tests/tolerance.py
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if name.endswith('lora_B'):
                param.normal_(std=0.02)  # a real delta
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    x = torch.randn(1, 3, 448, 448, dtype=torch.float64)
    with torch.no_grad():
        unmerged = model(x)
        model.merge_adapters()
        merged = model(x)
        moved = (model.backbone.layers[2].blocks[0].attn.qkv.weight
                 - weights['layers.2.blocks.0.attn.qkv.weight']).abs().max()
        model.unmerge_adapters()
    assert moved > 1e-3  # the merge folded a real delta in (weights are ~0.02)
    for task in unmerged:
        assert_identity(merged[task], unmerged[task], task)
    assert_same_state(model.backbone.state_dict(), weights)

    backbone = {k[len('backbone.'):]: v for k, v in merged_state_dict(model).items()
                if k.startswith('backbone.')}
    assert timm_swin(448).load_state_dict(backbone, strict=True)


# ------------------------------------------------------------------------- CLI
@pytest.fixture(scope='module')
def lora_run(cli, data_options, synth_root, tmp_path_factory):
    """The LoRA quickstart trained 4 iterations from a "pretrained" file (checkpoints at
    2 and 4, validation at 4), with TensorBoard and Δm against made-up references."""
    root = tmp_path_factory.mktemp('lora_run')
    torch.manual_seed(0)
    pretrained = str(root / 'swin_mini.pth')
    torch.save(timm_swin(128, **MINI).state_dict(), pretrained)
    options = data_options(synth_root, 4) + [f'model.backbone.pretrained={pretrained}']
    work_dir = str(root / 'work')
    cli('train', QUICKSTART_LORA, '--work-dir', work_dir, *options, 'visualizer.tensorboard=True',
        *[f'val_evaluator.references.{task}={value}' for task, value in REFERENCES.items()])
    return dict(work_dir=work_dir, options=options, pretrained=pretrained)


def test_runner_checkpoints_resume_training_exactly(cli, lora_run, tmp_path):
    # 2 iterations, then resume to 4, against the 4 straight iterations of lora_run. The
    # IterBasedTrainLoop replays the sampler (and the random transforms) of the skipped
    # iterations, so the resumed run sees the same batches.
    work_dir = str(tmp_path / 'resumed')
    proc = cli('train', QUICKSTART_LORA, '--work-dir', work_dir, '--resume',
               osp.join(lora_run['work_dir'], 'iter_2.pth'), *lora_run['options'],
               'train_cfg.val_interval=100')  # no validation needed here
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    straight = torch.load(osp.join(lora_run['work_dir'], 'iter_4.pth'), weights_only=False)
    resumed = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    assert set(straight['state_dict']) == set(resumed['state_dict'])
    for key, value in straight['state_dict'].items():
        assert torch.equal(resumed['state_dict'][key], value), key


def test_training_logs_the_optimizer_in_one_line_not_a_line_per_parameter(lora_run):
    [log] = Path(lora_run['work_dir']).glob('*/*.log')
    lines = log.read_text().splitlines()
    assert not [line for line in lines if 'requires_grad=False' in line
                or 'paramwise_options' in line]
    [summary] = [line for line in lines if 'optimizer AdamW:' in line]
    # LoRA rank 8 on every block + the four heads train; the pretrained Swin stays frozen
    assert re.search(r'optimizer AdamW: 1,581,056 parameters in \d+ tensors train '
                     r'\(weight_decay=0.0 for \d+\); 2,278,366 frozen parameters in \d+ '
                     'tensors are left out$', summary), summary


# The adapterkit command, killed (-9, by itself) the moment the checkpoint NAME starts to be
# written into WORK_DIR: a file of that name, or its temporary, exists and is not empty.
KILLED_IN_WRITE = textwrap.dedent("""
    import os, signal, sys, threading, time
    work_dir, name = sys.argv[1], sys.argv[2]

    def writing():
        for entry in os.listdir(work_dir) if os.path.isdir(work_dir) else ():
            if entry == name or entry.startswith('.' + name + '.'):
                try:
                    return os.path.getsize(os.path.join(work_dir, entry)) > 0
                except OSError:  # renamed meanwhile
                    pass
        return False

    def kill_when_writing():
        while not writing():
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=kill_when_writing, daemon=True).start()
    from adapterkit.cli import main
    sys.exit(main(sys.argv[3:]))
""")


def test_a_kill_during_a_checkpoint_write_loses_nothing_and_resumes_exactly(
        cli, lora_run, tmp_path):
    # max_keep_ckpts=1: mmengine deleted iter_2.pth before writing iter_4.pth, so this
    # kill left a half file and no checkpoint ("iter_2.pth can not be found" on resume).
    work_dir = str(tmp_path / 'killed')
    options = [*lora_run['options'], 'default_hooks.checkpoint.max_keep_ckpts=1']
    proc = subprocess.run([sys.executable, '-c', KILLED_IN_WRITE, work_dir, 'iter_4.pth',
                           'train', QUICKSTART_LORA, '--work-dir', work_dir, *options],
                          cwd=REPO, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL
    left = os.listdir(work_dir)
    assert 'iter_2.pth' in left and 'iter_4.pth' not in left
    assert any(name.startswith('.iter_4.pth.') for name in left)  # killed inside the write
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'iter_2.pth')

    proc = cli('train', QUICKSTART_LORA, '--work-dir', work_dir, '--resume', *options)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert sorted(n for n in os.listdir(work_dir) if '.pth' in n) == ['iter_4.pth']
    straight = torch.load(osp.join(lora_run['work_dir'], 'iter_4.pth'), weights_only=False)
    resumed = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    assert set(straight['state_dict']) == set(resumed['state_dict'])
    for key, value in straight['state_dict'].items():
        assert torch.equal(resumed['state_dict'][key], value), key


def test_cli_exports_an_adapter_only_file_that_evaluates_alone(cli, val_scalars, lora_run,
                                                               tmp_path):
    checkpoint = osp.join(lora_run['work_dir'], 'iter_4.pth')
    adapter = str(tmp_path / 'lora.safetensors')
    proc = cli('export', QUICKSTART_LORA, checkpoint, adapter, '--adapter-only',
               *lora_run['options'])
    assert f'wrote the adapter-only weights of {checkpoint} to {adapter}' in proc.stdout
    config = read_metadata(adapter)['config']  # the config it belongs to, overrides included
    assert "type='LoRA'" in config and 'swin_mini.pth' in config
    saved = load_file(adapter)
    assert all('lora_' in k or k.startswith('heads.') for k in saved)

    # `test FILE` alone (data roots and the pretrained file come from the stored config)
    # reproduces the validation metrics of training
    out, show = str(tmp_path / 'metrics.json'), str(tmp_path / 'show')
    cli('test', adapter, '--work-dir', str(tmp_path / 'test'), '--out', out, '--show-dir', show)
    with open(out) as f:
        tested = json.load(f)
    logged = val_scalars(lora_run['work_dir'])
    # the same float32 computation on the same weights, images, batches and threads: the
    # same bits, and the metrics reduce them in the same order
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mean'):
        assert tested[key] == logged[key], key
    for task in TASKS:  # one panel per image and task: image | ground truth | prediction
        panels = sorted(Path(show, task).glob('*.png'))
        assert len(panels) == 4, task
        assert all(cv2.imread(str(p)).shape == (*PANEL, 3) for p in panels), task

    # the same file on other backbone weights: one line, nothing evaluated
    other = str(tmp_path / 'other_swin.pth')
    torch.manual_seed(1)
    torch.save(timm_swin(128, **MINI).state_dict(), other)
    proc = cli('test', adapter, '--work-dir', str(tmp_path / 'other'), '--out',
               str(tmp_path / 'other.json'), '--cfg-options',
               f'model.backbone.pretrained={other}', check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'adapterkit test: error: {adapter}: trained on other backbone '
                           'weights (swin_mini.pth, sha256 ')
    assert last.endswith('or pass --allow-other-backbone (allow_other_backbone=True)')
    assert not osp.exists(tmp_path / 'other.json')


def test_cli_merge_export_loads_into_plain_timm_and_evaluates_alone(cli, val_scalars, lora_run,
                                                                    tmp_path):
    merged = str(tmp_path / 'merged.safetensors')
    cli('export', QUICKSTART_LORA, osp.join(lora_run['work_dir'], 'iter_4.pth'), merged,
        '--merge', *lora_run['options'])
    state = load_file(merged)
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    assert timm_swin(128, **MINI).load_state_dict(backbone, strict=True)
    assert read_metadata(merged)['adapterkit_format'] == 'merged'

    out = str(tmp_path / 'metrics.json')
    cli('test', merged, '--work-dir', str(tmp_path / 'test'), '--out', out)
    with open(out) as f:
        tested = json.load(f)
    logged = val_scalars(lora_run['work_dir'])
    # merged weights differ from the unmerged sum by fp32 rounding (~1e-6 of the logits):
    # a pixel's class flips only at a near-tie, so the metrics agree to far below 0.1
    for key in ('semseg/mIoU', 'human_parts/mIoU', 'sal/mIoU', 'normals/mean'):
        assert tested[key] == pytest.approx(logged[key], abs=0.1), key


def test_a_quickstart_run_writes_tensorboard_scalars_and_panels(val_scalars, lora_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = glob.glob(osp.join(lora_run['work_dir'], '*', 'vis_data', 'events.out.tfevents.*'))
    assert len(events) == 1
    board = EventAccumulator(events[0], size_guidance={'images': 0, 'scalars': 0})
    board.Reload()
    scalars = set(board.Tags()['scalars'])
    logged = val_scalars(lora_run['work_dir'])
    metrics = {k for k in logged if '/' in k or k == 'delta_m'}
    assert 'delta_m' in metrics and metrics <= scalars, metrics - scalars
    assert {'loss', 'lr', *(f'loss_{task}' for task in TASKS)} <= scalars
    images = board.Tags()['images']
    for task in TASKS:
        shown = [tag for tag in images if tag.startswith(f'val_{task}_')]
        assert len(shown) == 2, (task, images)  # LogPredictionsHook(num_images=2)
        for tag in shown:
            event = board.Images(tag)[-1]
            assert (event.height, event.width, event.step) == (*PANEL, 4)
