"""Kill ``adapterkit compare`` (kill -9) at random points, checkpoint writes included, and
check that every rerun finishes with the metrics of an uninterrupted run (issue 16).

    python benchmarks/faults_compare.py [--kills 20] [--out DIR] [--executor serial|local]

The suite: two members (full fine-tuning and LoRA) of the quickstart model at 64 px, 6
iterations of batch 2 with a checkpoint after each, fixed references, one seed. First one
uninterrupted compare; then, ``--kills`` times, a compare in a fresh work dir that is
killed (its whole process group: the compare and its workers), alternately after a random
delay and the moment a new checkpoint file appears (while it is being written), then run
again to the end. Every rerun must succeed and every run's final metrics must equal the
uninterrupted run's exactly (resuming is bit-identical on CPU). Prints one line per kill
and a summary; exits 1 on any difference.
"""
import argparse
import glob
import json
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(REPO, 'configs', 'quickstart')
SUITE = '''
base = {full!r}
members = dict(full={full!r}, lora={lora!r})
tasks = ['sal', 'normals']
references = dict(sal=50.0, normals=30.0)
data = dict(root={data!r}, synthesize=dict(num_train=8, num_val=4, size=64, seed=0))
options = {{
    'model.backbone.img_size': 64, 'model.backbone.embed_dim': 16,
    'model.backbone.depths': (1, 1, 1, 1),
    'train_dataloader.dataset.pipeline.2.size': (64, 64),
    'val_dataloader.dataset.pipeline.0.size': (64, 64),
    'test_dataloader.dataset.pipeline.0.size': (64, 64),
    'train_dataloader.batch_size': 2, 'val_dataloader.batch_size': 2,
    'train_cfg.max_iters': 6, 'train_cfg.val_interval': 6,
    'default_hooks.checkpoint.interval': 1, 'param_scheduler': [],
}}
'''


def compare(suite, work, executor, **popen):
    return subprocess.Popen([sys.executable, '-m', 'adapterkit', 'compare', suite,
                             '--work-dir', work, '--executor', executor],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            **popen)


def metrics(work):
    return {osp.relpath(p, work): json.load(open(p))['metrics']
            for p in sorted(glob.glob(osp.join(work, '*', 'seed_*', 'metrics.json')))}


def kill_at_random(process, rng):
    time.sleep(rng.uniform(2.0, 40.0))


def kill_in_a_checkpoint_write(process, work, rng):
    seen = set(glob.glob(osp.join(work, '*', 'seed_*', 'iter_*.pth')))
    wanted = rng.randint(1, 8)
    while process.poll() is None:
        new = set(glob.glob(osp.join(work, '*', 'seed_*', 'iter_*.pth'))) - seen
        if new:
            wanted -= 1
            seen |= new
            if wanted == 0:
                return
        time.sleep(0.002)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=20)
    parser.add_argument('--out', help='default: a new temporary folder')
    parser.add_argument('--executor', default='serial', choices=['serial', 'local'])
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = args.out or tempfile.mkdtemp(prefix='faults_compare_')
    os.makedirs(out, exist_ok=True)
    suite = osp.join(out, 'faults.py')
    with open(suite, 'w') as f:
        f.write(SUITE.format(full=osp.join(QUICKSTART, 'full_swin-mini_synthetic-128.py'),
                             lora=osp.join(QUICKSTART, 'lora_swin-mini_synthetic-128.py'),
                             data=osp.join(out, 'data')))
    reference = osp.join(out, 'uninterrupted')
    if compare(suite, reference, args.executor).wait() != 0:
        raise SystemExit('the uninterrupted compare failed')
    expected = metrics(reference)
    failures = 0
    for k in range(args.kills):
        work = osp.join(out, f'killed_{k}')
        process = compare(suite, work, args.executor)
        how = 'random' if k % 2 == 0 else 'checkpoint write'
        if how == 'random':
            kill_at_random(process, rng)
        else:
            kill_in_a_checkpoint_write(process, work, rng)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        state = sorted(osp.relpath(p, work) for p in
                       glob.glob(osp.join(work, '*', 'seed_*', '*.pth')))
        code = compare(suite, work, args.executor).wait()
        same = metrics(work) == expected
        failures += code != 0 or not same
        print(f'kill {k + 1} ({how}), checkpoints left {state}: rerun exit {code}, metrics '
              f'{"equal" if same else "DIFFERENT"}', flush=True)
    print(f'{args.kills - failures} of {args.kills} reruns finished with the uninterrupted '
          f'metrics (work dirs under {out})')
    return 1 if failures else 0


if __name__ == '__main__':
    raise SystemExit(main())
