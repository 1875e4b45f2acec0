"""Distributed training through mmengine on CPU: 2 processes under torchrun with gloo.

The 2-process runs must reproduce a 1-process run of the same global batch. That holds
exactly (to float rounding) only when every source of per-rank difference is removed:

- Loss: DDP averages the ranks' gradients, which equals the gradient of the global batch
  mean only when each rank's loss is a mean over equally many elements. The task losses
  are means over valid pixels, so the run trains semseg alone: synthetic semseg maps have
  no ignored pixel and all images have the same size.
- BatchNorm: per-rank batch statistics differ from the global ones, and torch's
  SyncBatchNorm, which would share them, has no CPU kernel (torch 2.14). The head here is
  an FCN head without normalisation; SyncBN is checked on its own below.
- Data: the validation pipeline (no random augmentation) for training, no dropout or drop
  path, and InfiniteSampler without shuffling: rank r takes images r, r+2, ..., so the
  ranks' batches [0, 2] and [1, 3] together are the single process's [0, 1, 2, 3].
- Weights: both runs start from one checkpoint (load_from), whatever the RNG order.
- Optimizer: SGD, whose step is linear in the gradient; AdamW's first steps are close to
  sign(gradient) and would hide a wrongly averaged gradient. Gradient clipping stays on
  (the gradient norm is ~20 against max_norm 5), so it must see the averaged gradient too.

What remains is rounding (tests/tolerance.py): the runs sum the same per-pixel terms of each
gradient in other orders (per rank, then gloo's sum). A float32 sum of n terms reordered
moves by about lambda sqrt(n) u relative to its terms (the probabilistic bound of Higham and
Mary, SIAM J. Sci. Comput. 41(5), 2019; lambda = 10 leaves a chance below 1e-20 per entry),
with n <= 2^14 pixels here: 7.6e-5. The clipping factor 5 / |g| carries as much again, and
each of the STEPS steps adds its own: ROUNDING = 2 * 7.6e-5 * STEPS of the weights' change
and of the logged gradient norms.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from tolerance import unit_roundoff

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')
STEPS = 3
ROUNDING = 2 * 10 * 2 ** 7 * unit_roundoff(torch.float32) * STEPS  # 4.6e-4: see above

EXACT_CONFIG = """
_base_ = [{quickstart!r}]
pipeline = [dict(type='MultiTaskResize', size=(64, 64)), dict(type='PackMultiTaskInputs')]
model = dict(
    backbone=dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)),
    tasks=dict(_delete_=True, semseg=dict(loss_weight=1.0)),
    head=dict(_delete_=True, type='MMSegHead', decode_head=dict(
        type='FCNHead', in_index=[0, 1, 2, 3], input_transform='resize_concat', channels=16,
        num_convs=1, concat_input=False, norm_cfg=None, dropout_ratio=0.0)))
train_dataloader = dict(batch_size=4, sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(data_root={root!r}, pipeline=pipeline))
val_dataloader = dict(batch_size=2, dataset=dict(data_root={root!r}, pipeline=pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(_delete_=True, type='OptimWrapper', clip_grad=dict(max_norm=5.0),
                     optimizer=dict(type='SGD', lr=0.05, momentum=0.9))
param_scheduler = []
train_cfg = dict(max_iters={steps}, val_interval={steps})
default_hooks = dict(checkpoint=dict(interval={steps}), logger=dict(interval=1))
load_from = {init!r}
"""

# The shipped FSDP config's strategy, on the small model of the other runs.
FSDP_SHIPPED = osp.join(REPO, 'configs/distributed/full_swin-t_pascal-448_fsdp.py')
FSDP_CONFIG = """
_base_ = [{exact!r}]
strategy = {strategy!r}
"""


# The adapterkit command, saying at interpreter exit which threads its process still has
# (Linux names them in /proc): gloo's threads must be gone by then (engine/distributed.py,
# end_launch), or they may abort the process ("terminate called without an active exception").
ADAPTERKIT_AT_EXIT = """
import atexit, os, sys

def threads():
    names = []
    for task in os.listdir('/proc/self/task'):
        try:
            with open(f'/proc/self/task/{task}/comm') as f:
                names.append(f.read().strip())
        except OSError:  # ended meanwhile
            pass
    print(f'threads at exit: {sorted(names)}', flush=True)

atexit.register(threads)  # registered first, so it runs after every other atexit handler
from adapterkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(*args, processes=1, tmp=None):
    """The adapterkit command in fresh processes: plain, or under torchrun with gloo (the
    ranks report their threads at exit; ``tmp`` holds the script that does it)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    command = [sys.executable, '-m', 'adapterkit', *args]
    if processes > 1:
        script = osp.join(tmp, 'adapterkit_at_exit.py')
        with open(script, 'w') as f:
            f.write(ADAPTERKIT_AT_EXIT)
        command = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
                   f'--nproc_per_node={processes}', script, *args, '--launcher', 'pytorch']
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f'{" ".join(command)} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def logged(work_dir, key):
    """Every value of ``key`` the Runner logged, in order."""
    (path,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [record[key] for record in map(json.loads, f) if key in record]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """One config trained by 1 process with batch 4, by 2 DDP processes with batch 2 each,
    and by 2 FSDP processes with batch 2 each, from the same initial weights."""
    from adapterkit import build_model, load_config
    from adapterkit.datasets.synthetic import synthesize

    tmp = tmp_path_factory.mktemp('distributed')
    root = synthesize(str(tmp / 'data'), num_train=8, num_val=5, size=64, seed=1)
    exact, init = str(tmp / 'exact.py'), str(tmp / 'init.pth')
    with open(exact, 'w') as f:
        f.write(EXACT_CONFIG.format(quickstart=QUICKSTART, root=root, steps=STEPS, init=init))
    with open(tmp / 'fsdp.py', 'w') as f:
        strategy = Config.fromfile(FSDP_SHIPPED).strategy.to_dict()
        f.write(FSDP_CONFIG.format(exact=exact, strategy=strategy))
    torch.manual_seed(0)
    torch.save({'state_dict': build_model(load_config(exact)).state_dict()}, init)

    dirs = {name: str(tmp / name) for name in ('single', 'ddp', 'fsdp')}
    run('train', exact, '--work-dir', dirs['single'])
    per_rank = ['--cfg-options', 'train_dataloader.batch_size=2']
    outputs = dict(
        ddp=run('train', exact, '--work-dir', dirs['ddp'], *per_rank, processes=2, tmp=tmp),
        fsdp=run('train', str(tmp / 'fsdp.py'), '--work-dir', dirs['fsdp'], *per_rank,
                 processes=2, tmp=tmp))
    return dict(dirs, init=init, outputs={k: p.stdout + p.stderr for k, p in outputs.items()})


@pytest.mark.parametrize('kind', ['ddp', 'fsdp'])
def test_two_processes_train_like_one_with_the_same_global_batch(runs, kind):
    single = weights(osp.join(runs['single'], f'iter_{STEPS}.pth'))
    distributed = weights(osp.join(runs[kind], f'iter_{STEPS}.pth'))
    moved = max_abs_diff(single, weights(runs['init']))
    assert moved > 1e-2  # training moved them
    assert max_abs_diff(single, distributed) <= ROUNDING * moved
    # Rank 0 logs the norm of the gradient it steps with: the all-reduced one, which under
    # FSDP needs FSDPGradClipHook (a per-shard norm would be smaller).
    assert logged(runs[kind], 'grad_norm') == pytest.approx(
        logged(runs['single'], 'grad_norm'), rel=ROUNDING)


def test_rank_zero_writes_one_checkpoint_and_one_report(runs):
    work_dir = runs['ddp']
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))) == [
        f'iter_{STEPS}.pth']
    assert len(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))) == 1
    reports = [p for p in os.listdir(work_dir) if p.startswith('metrics.json')]
    assert reports == ['metrics.json']


def test_metrics_gathered_over_ranks_equal_the_single_process_metrics(runs):
    # 5 validation images on 2 ranks: rank 1 gets a padded duplicate, which mmengine's
    # collect_results drops again; every image counts once.
    def report(work_dir):
        with open(osp.join(work_dir, 'metrics.json')) as f:
            return json.load(f)['metrics']
    single = report(runs['single'])
    for kind in ('ddp', 'fsdp'):
        assert report(runs[kind]) == pytest.approx(single, abs=1e-6)


@pytest.mark.parametrize('kind', ['ddp', 'fsdp'])
def test_every_rank_ends_with_no_gloo_thread_left_for_interpreter_exit(runs, kind):
    # The process groups live on in the wrapped model's reference cycles; collected only
    # at interpreter exit, their threads aborted 2 of 4 runs under load (end_launch).
    reports = [line for line in runs['outputs'][kind].splitlines()
               if 'threads at exit:' in line]
    assert len(reports) == 2 and not [line for line in reports if 'gloo' in line], reports
