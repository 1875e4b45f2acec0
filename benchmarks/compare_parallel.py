"""Wall time of a 3-member comparison run serially and with ``--executor local
--max-parallel N``, in fresh work dirs, and their ratio (issue 18: at most 0.7 on 2 cores
with N = 2).

    python benchmarks/compare_parallel.py [--out DIR] [--iters 120] [--max-parallel 2]
        [--serial-threads N]

The suite is the quickstart's (mini Swin, HRNet heads, four tasks, 64 px, batch 8) with
full fine-tuning, LoRA and MTLoRA, fixed references (no single-task runs, no pretraining)
and one seed, on 160 + 40 synthetic scenes written once before the timing. Each timing is a
whole ``adapterkit compare`` process: start-up, three runs (training, final validation,
latency) and the report. The serial run uses ``--serial-threads`` torch threads (default:
every core, torch's default); each parallel worker gets cores / N. On a machine shared with
other jobs both timings move: run it when the machine is quiet, and give ``uptime``.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SUITE = '''
_size = 64
base = {quickstart!r}
members = dict(full={quickstart!r}, lora={lora!r}, mtlora={mtlora!r})
references = dict(semseg=40.0, human_parts=15.0, sal=50.0, normals=20.0)
seeds = [0]
data = dict(root={data!r}, synthesize=dict(num_train=160, num_val=40, size=_size, seed=0))
options = {{
    'model.backbone.img_size': _size,
    'train_dataloader.dataset.pipeline.2.size': (_size, _size),
    'val_dataloader.dataset.pipeline.0.size': (_size, _size),
    'test_dataloader.dataset.pipeline.0.size': (_size, _size),
    'val_dataloader.batch_size': 20,
    'train_cfg.max_iters': {iters},
    'train_cfg.val_interval': {iters},
    'param_scheduler': [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False,
                             begin=0, end={iters}, T_max={iters})],
    'default_hooks.checkpoint.interval': {iters},
}}
'''


def timed(args, env) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'adapterkit', 'compare', *args], check=True,
                   env=dict(os.environ, **env), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', help='where the suite, data and work dirs go (default: a '
                        'new temporary folder)')
    parser.add_argument('--iters', type=int, default=120)
    parser.add_argument('--max-parallel', type=int, default=2)
    parser.add_argument('--serial-threads', type=int, help="torch threads of the serial run "
                        "(default: torch's, every core)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix='compare_parallel_')
    os.makedirs(out, exist_ok=True)
    quickstart = osp.join(REPO, 'configs', 'quickstart')
    suite = osp.join(out, 'three.py')
    with open(suite, 'w') as f:
        f.write(SUITE.format(quickstart=osp.join(quickstart, 'full_swin-mini_synthetic-128.py'),
                             lora=osp.join(quickstart, 'lora_swin-mini_synthetic-128.py'),
                             mtlora=osp.join(quickstart, 'mtlora_swin-mini_synthetic-128.py'),
                             data=osp.join(out, 'data'), iters=args.iters))
    # the data once, untimed: a compare with no member to train writes it
    subprocess.run([sys.executable, '-m', 'adapterkit', 'compare', suite, '--only', 'full',
                    '--work-dir', osp.join(out, 'warm-up'), '--cfg-options',
                    'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
                    'default_hooks.checkpoint.interval=1', 'param_scheduler=[]'],
                   check=True, stdout=subprocess.DEVNULL)
    cores = len(os.sched_getaffinity(0))
    serial_env = {} if args.serial_threads is None else dict(
        OMP_NUM_THREADS=str(args.serial_threads))
    serial = timed([suite, '--work-dir', osp.join(out, 'serial')], serial_env)
    parallel = timed([suite, '--work-dir', osp.join(out, 'parallel'), '--executor', 'local',
                      '--max-parallel', str(args.max_parallel)], {})
    threads = args.serial_threads or cores
    print(f'{cores} cores; 3 members x {args.iters} iterations')
    print(f'serial ({threads} thread(s)):         {serial:7.1f} s')
    print(f'--max-parallel {args.max_parallel} '
          f'({max(1, cores // args.max_parallel)} thread(s) each): {parallel:7.1f} s')
    print(f'ratio: {parallel / serial:.2f}  (work dirs under {out})')


if __name__ == '__main__':
    main()
