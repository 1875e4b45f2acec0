"""Kill -9 at random points, resume, and compare with an uninterrupted run, bit for bit.

    python benchmarks/fault_injection.py [--target train] [--trials 20] [--seed 0]
        [--threads 1] [--work-dir DIR] [--out FILE]

A *target* is a command that can be killed and resumed (``Target``: its command line, first
or resumed, the files a kill should hit while they are written, and the results it ends
with). ``train`` is `adapterkit train` on the quickstart config shrunk to seconds (a Swin
with one block per stage at 64 px, semseg and normals, 8 synthetic scenes): ``ITERS``
iterations, a checkpoint after each one (``max_keep_ckpts=1``, so every save deletes the
previous checkpoint), validation at the end. Another command joins with a ``Target``
subclass in ``TARGETS``.

First the target runs uninterrupted. Then every trial starts it afresh in its own work dir,
kills it (SIGKILL) once, resumes it to the end, and compares the results with the
uninterrupted run's: every tensor of the final checkpoint (weights, optimizer state) and the
metrics, exactly. Trials alternate two kinds of kill:

- ``delay``: after a random delay, uniform over the uninterrupted run's duration, so start-up,
  training steps, checkpoint writes and the validation are all hit;
- ``write``: inside a checkpoint write, the one of a randomly chosen iteration: a thread in
  the process kills it the instant that checkpoint's temporary file (or, with a hook that
  writes in place, the file itself) has bytes.

After each kill the script notes whether a write was cut (a temporary was left) and where
the resumed run starts. Prints one line per trial and the summary as JSON (``--out`` also
writes it); the exit status is 1 when a resumed run failed or differed.
"""
import argparse
import json
import os
import os.path as osp
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
QUICKSTART = osp.join(REPO, 'configs/quickstart/full_swin-mini_synthetic-128.py')
ITERS = 6

TINY_CONFIG = """_base_ = [{quickstart!r}]
# Seconds per run: one Swin block per stage, 64 px, two tasks, batch 2.
pipeline = [dict(type='MultiTaskResize', size=(64, 64)), dict(type='PackMultiTaskInputs')]
model = dict(
    backbone=dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)),
    tasks=dict(_delete_=True, semseg=dict(), normals=dict()))
train_dataloader = dict(batch_size=2, dataset=dict(data_root={root!r}, pipeline=[
    dict(type='MultiTaskRandomFlip', prob=0.5)] + pipeline))
val_dataloader = dict(batch_size=2, dataset=dict(data_root={root!r}, pipeline=pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={iters})
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1), logger=dict(interval=1))
"""

# The adapterkit command, killed (-9, by itself) the moment the file NAME starts to be
# written into FOLDER: a file of that name, or its temporary, exists and holds bytes.
KILLED_IN_WRITE = """
import os, signal, sys, threading, time
folder, name = sys.argv[1], sys.argv[2]

def writing():
    for entry in os.listdir(folder) if os.path.isdir(folder) else ():
        if entry == name or entry.startswith('.' + name + '.'):
            try:
                return os.path.getsize(os.path.join(folder, entry)) > 0
            except OSError:  # renamed meanwhile
                pass
    return False

def kill_when_writing():
    while not writing():
        time.sleep(0.0005)
    os.kill(os.getpid(), signal.SIGKILL)

threading.Thread(target=kill_when_writing, daemon=True).start()
from adapterkit.cli import main
sys.exit(main(sys.argv[3:]))
"""


class Target:
    """A command to kill and resume. ``prepare`` once, then per work dir: ``command``
    (``resume``: after a kill), the files a ``write`` kill may hit (``written``, in
    ``folder``), and ``results`` once it has finished."""

    name = ''

    def prepare(self, root: str) -> None:
        raise NotImplementedError

    def command(self, work_dir: str, resume: bool) -> list:
        raise NotImplementedError

    def folder(self, work_dir: str) -> str:
        return work_dir

    def written(self) -> list:
        raise NotImplementedError

    def results(self, work_dir: str) -> dict:
        """``{name: tensor or number}``, compared exactly between runs."""
        raise NotImplementedError


class TrainTarget(Target):
    """`adapterkit train` of a tiny quickstart config (see the module docstring)."""

    name = 'train'

    def prepare(self, root):
        from adapterkit.datasets.synthetic import synthesize
        data = synthesize(osp.join(root, 'data'), num_train=8, num_val=4, size=64, seed=5)
        self.config = osp.join(root, 'tiny.py')
        with open(self.config, 'w') as f:
            f.write(TINY_CONFIG.format(quickstart=QUICKSTART, root=data, iters=ITERS))

    def command(self, work_dir, resume):
        return ['train', self.config, '--work-dir', work_dir] + (['--resume'] if resume else [])

    def written(self):
        return [f'iter_{k}.pth' for k in range(1, ITERS + 1)]

    def results(self, work_dir):
        saved = torch.load(osp.join(work_dir, f'iter_{ITERS}.pth'), map_location='cpu',
                           weights_only=False)
        found = {f'weights/{k}': v for k, v in saved['state_dict'].items()}
        for index, state in saved['optimizer']['state'].items():
            found.update({f'optimizer/{index}/{k}': v for k, v in state.items()})
        with open(osp.join(work_dir, 'metrics.json')) as f:
            record = json.load(f)
        found.update({f'metrics/{k}': v for k, v in record['metrics'].items()})
        found['metrics/iter'] = record['iter']
        return found


TARGETS = {target.name: target for target in (TrainTarget(),)}


def adapterkit(args: list, threads: int, kill_in_write=None) -> subprocess.Popen:
    """Start the adapterkit command (``kill_in_write=(folder, name)``: under the watcher)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    prefix = (['-c', KILLED_IN_WRITE, *kill_in_write] if kill_in_write
              else ['-m', 'adapterkit'])
    return subprocess.Popen([sys.executable, *prefix, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f'{what} failed ({proc.returncode}): {err.strip()[-2000:]}')


def differences(expected: dict, found: dict) -> list:
    keys = sorted(set(expected) | set(found))
    return [k for k in keys if k not in expected or k not in found or not (
        torch.equal(expected[k], found[k]) if isinstance(expected[k], torch.Tensor)
        else expected[k] == found[k])]


def trial(target: Target, work_dir: str, kind: str, rng: random.Random, duration: float,
          threads: int) -> dict:
    """Start, kill once, resume to the end; what happened and how the results compare."""
    if kind == 'write':
        name = rng.choice(target.written())
        proc = adapterkit(target.command(work_dir, False), threads,
                          kill_in_write=(target.folder(work_dir), name))
        proc.communicate()
        what = f'in the write of {name}'
    else:
        delay = rng.uniform(0.0, duration)
        proc = adapterkit(target.command(work_dir, False), threads)
        try:
            proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        what = f'after {delay:.1f} s'
    from adapterkit.fileio import TEMPORARY  # the temporaries of interrupted writes
    folder = target.folder(work_dir)
    left = os.listdir(folder) if osp.isdir(folder) else []
    cut = sorted(TEMPORARY.fullmatch(n).group(1) for n in left if TEMPORARY.fullmatch(n))
    resumed_from = None
    if osp.isfile(osp.join(folder, 'last_checkpoint')):
        with open(osp.join(folder, 'last_checkpoint')) as f:
            resumed_from = osp.basename(f.read().strip())
    record = dict(kind=kind, kill=what, killed=proc.returncode == -signal.SIGKILL,
                  writes_cut=cut, resumed_from=resumed_from)
    started = time.perf_counter()
    finish(adapterkit(target.command(work_dir, True), threads), 'the resumed run')
    record['resume_s'] = round(time.perf_counter() - started, 1)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--target', choices=sorted(TARGETS), default='train')
    parser.add_argument('--trials', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of every run')
    parser.add_argument('--work-dir', help='keep everything here (default: a temporary dir)')
    parser.add_argument('--out', help='also write the summary (JSON) here')
    args = parser.parse_args(argv)
    target, rng = TARGETS[args.target], random.Random(args.seed)
    root = args.work_dir or tempfile.mkdtemp(prefix='fault_injection_')
    os.makedirs(root, exist_ok=True)
    target.prepare(root)

    started = time.perf_counter()
    reference_dir = osp.join(root, 'uninterrupted')
    shutil.rmtree(reference_dir, ignore_errors=True)
    finish(adapterkit(target.command(reference_dir, False), args.threads), 'the uninterrupted run')
    duration = time.perf_counter() - started
    expected = target.results(reference_dir)
    print(f'uninterrupted run: {duration:.1f} s, {len(expected)} results', flush=True)

    trials = []
    for index in range(args.trials):
        work_dir = osp.join(root, f'trial_{index:02d}')
        shutil.rmtree(work_dir, ignore_errors=True)
        kind = ('delay', 'write')[index % 2]
        try:
            record = trial(target, work_dir, kind, rng, duration, args.threads)
            record['different'] = differences(expected, target.results(work_dir))
        except (RuntimeError, OSError, KeyError) as err:
            record = dict(kind=kind, error=str(err))
        record['equal'] = not record.get('error') and not record['different']
        trials.append(record)
        print(f'trial {index:2d}: ' + json.dumps(record), flush=True)

    summary = dict(
        target=target.name, trials=len(trials), uninterrupted_s=round(duration, 1),
        killed=sum(t.get('killed', False) for t in trials),
        writes_cut=sum(bool(t.get('writes_cut')) for t in trials),
        resumed_from_scratch=sum(t.get('resumed_from') is None for t in trials
                                 if 'error' not in t),
        equal=sum(t['equal'] for t in trials), runs=trials)
    text = json.dumps({k: v for k, v in summary.items() if k != 'runs'}, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=2)
    return 0 if summary['equal'] == len(trials) else 1


if __name__ == '__main__':
    sys.exit(main())
