"""MTLoRA through the real CLI: the quickstart config trains on synthetic data, `params`
reports a released config's count, `bench` measures a config."""
import json
import os.path as osp

from adapterkit.cli import main
from adapterkit.engine.bench import bench, format_report


def test_quickstart_config_trains_through_the_cli(cli, data_options, val_scalars, synth_root,
                                                  tmp_path):
    # MTLoRA+'s quickstart config trains in tests/test_strategy_configs.py (every strategy)
    work_dir = str(tmp_path / 'run')
    cli('train', 'configs/quickstart/mtlora_swin-mini_synthetic-128.py', '--work-dir', work_dir,
        *data_options(synth_root, 2))
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
    assert 'normals/mean' in val_scalars(work_dir)


def test_params_reports_the_reference_count(cli):
    proc = cli('params', 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py', '--json')
    assert json.loads(proc.stdout)['trainable'] == 8_344_634


def test_bench_measures_training_and_merged_inference(cli):
    config = 'configs/quickstart/mtlora_swin-mini_synthetic-128.py'
    train = json.loads(cli('bench', config, '--img', '64', '--iters', '1', '--warmup', '0',
                           '--tasks', 'semseg,edge', '--threads', '1', '--json').stdout)
    assert train['mode'] == 'train' and train['tasks'] == ['semseg', 'edge']
    assert train['threads'] == 1 and train['img'] == 64 and train['step_s'] > 0
    assert train['peak_memory_mb'] > 0
    infer = bench(config, mode='infer', merged=True, img=64, iters=1, warmup=0)
    assert 'infer, merged, batch 2, 64 px, 4 tasks' in format_report(infer)


def test_bench_amp_trains_under_bf16_autocast_through_the_optim_wrapper():
    import torch
    from adapterkit.config import build_model, load_config
    from adapterkit.engine.bench import random_targets, training_step
    cfg = load_config('configs/quickstart/mtlora_swin-mini_synthetic-128.py')
    cfg.model.backbone.update(pretrained=None, img_size=64)
    model = build_model(cfg).train()
    qkv = model.backbone.layers[0].blocks[0].attn.qkv
    dtypes = []
    qkv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = qkv.lora_shared_A.detach().clone()
    step = training_step(model, torch.randn(2, 3, 64, 64),
                         dict(gt=random_targets(model.tasks, 2, 64, 'cpu')), amp=True)
    step()
    assert dtypes == [torch.bfloat16]
    assert qkv.lora_shared_A.dtype == torch.float32  # the weights stay fp32
    assert not torch.equal(qkv.lora_shared_A, before)  # and AdamW stepped them
    infer = bench('configs/quickstart/mtlora_swin-mini_synthetic-128.py', mode='infer',
                  img=64, iters=1, warmup=0, amp=True)
    assert infer['amp'] == 'bfloat16' and 'infer, bfloat16 autocast' in format_report(infer)


def test_bench_refuses_merged_training_in_one_line(capsys):
    assert main(['bench', 'configs/quickstart/mtlora_swin-mini_synthetic-128.py',
                 '--merged']) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        'adapterkit bench: error: --merged is for --mode infer (merged weights cannot train)')
