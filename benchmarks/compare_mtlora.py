"""adapterkit's MTLoRA against the reference implementation, measured side by side.

    python benchmarks/compare_mtlora.py /path/to/MTLoRA [--threads 2] [--iters 5]
        [--cpu-malloc retain|system] [--amp] [--out FILE]

Swin-T, shared rank 64, task rank 4, 448 px, batch 2, random weights and data:

- step times: both models live in one process and their steps alternate (warm-up first), so
  both see the same machine load; the median of ``iters`` steps each:
  training (forward, the task losses, backward, AdamW) with the four PASCAL tasks;
  inference forward, adapterkit merged and unmerged (the reference cannot merge); training
  with 1 task (semseg) and with 5 (+ edge), those four models alternating together;
- peak memory of training steps (two warm-up, three measured) with the four tasks: one fresh
  process each (`adapterkit bench`, `bench_reference_mtlora.py`), as both report it.

Both run with glibc's allocator set the same way, ``--cpu-malloc``: 'retain' (adapterkit's
default on CPU, see ``adapterkit/engine/cpu_malloc.py``) or 'system' (glibc's defaults, as
the reference runs on its own). ``--amp`` runs both under the autocast of
`adapterkit bench --amp` (bf16 on CPU). Prints the figures and the ratios (adapterkit /
reference) as JSON; ``--out`` writes them.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import subprocess
import sys

import torch
from steps import alternate

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
CONFIG = 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py'
FOUR = ['semseg', 'human_parts', 'sal', 'normals']


def models(checkout, tasks):
    """(adapterkit model, reference model) for ``tasks``, random weights."""
    from adapterkit.config import build_model, load_config
    from bench_reference_mtlora import reference_model
    cfg = load_config(osp.join(REPO, CONFIG))
    cfg.model.backbone.pretrained = None
    given = cfg.model.tasks
    cfg.model.tasks = {t: given.get(t, {}) for t in tasks}
    with contextlib.redirect_stdout(sys.stderr):  # the reference prints as it builds
        reference = reference_model(checkout, tasks, 64, 4, False, 448)
    return build_model(cfg), reference


def step_of(model, forward, mode, tasks, images, targets, amp=False):
    from adapterkit.engine.optim import amp_autocast
    device = images.device.type
    if mode == 'infer':
        model.eval()

        def step():
            with torch.no_grad(), amp_autocast(device, amp):
                forward(images)
        return step
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with amp_autocast(device, amp):
            logits = forward(images)
            loss = sum(task.loss_weight * task.loss(logits[name], targets[name])
                       for name, task in tasks.items())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def peak_memory(command, threads, cpu_malloc):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ADAPTERKIT_CPU_MALLOC=cpu_malloc)
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'{" ".join(command)} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout)['peak_memory_mb']


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkout', help='a checkout of github.com/scale-lab/MTLoRA')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--cpu-malloc', choices=['retain', 'system'], default='retain',
                        help="glibc's allocator for both implementations")
    parser.add_argument('--amp', action='store_true', help='both under bf16 autocast')
    parser.add_argument('--out', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    sys.path.insert(0, HERE)
    import adapterkit  # noqa: F401
    from adapterkit.engine.bench import random_targets
    from adapterkit.engine.cpu_malloc import configure_cpu_malloc
    from adapterkit.tasks.base import build_tasks
    torch.set_num_threads(args.threads)
    configure_cpu_malloc(args.cpu_malloc)
    images = torch.randn(2, 3, 448, 448)

    def train_steps(names):
        tasks = build_tasks(names)
        ours, reference = models(args.checkout, names)
        targets = random_targets(tasks, 2, 448, 'cpu')
        steps = {'adapterkit': step_of(ours, lambda x: ours(x, mode='tensor'), 'train', tasks,
                                       images, targets, args.amp),
                 'reference': step_of(reference, reference, 'train', tasks, images, targets,
                                      args.amp)}
        return steps, ours, reference, tasks, targets

    seconds = {}
    steps, ours, reference, tasks, targets = train_steps(FOUR)
    seconds.update({f'{k}_train_4_tasks': v for k, v in alternate(steps, args.iters)[0].items()})
    unmerged = step_of(ours, lambda x: ours(x, mode='tensor'), 'infer', tasks, images, targets,
                       args.amp)
    times = alternate({'adapterkit': unmerged,
                       'reference': step_of(reference, reference, 'infer', tasks, images,
                                            targets, args.amp)}, args.iters)[0]
    seconds.update({f'{k}_infer': v for k, v in times.items()})
    ours.merge_adapters()
    seconds['adapterkit_infer_merged'] = alternate({'merged': unmerged}, args.iters)[0]['merged']
    print(json.dumps(seconds), flush=True)
    del steps, ours, reference, unmerged
    # what more tasks add is a difference of two step times: all four steps alternate, so
    # that a drift of the machine's speed between them cannot enter it
    steps = {}
    for label, names in (('1_task', FOUR[:1]), ('5_tasks', FOUR + ['edge'])):
        steps.update({f'{impl}_train_{label}': step
                      for impl, step in train_steps(names)[0].items()})
    seconds.update(alternate(steps, args.iters)[0])
    print(json.dumps(seconds), flush=True)
    del steps

    common = ['--threads', str(args.threads), '--iters', '3', '--warmup', '2', '--json'] \
        + (['--amp'] if args.amp else [])
    memory = dict(
        adapterkit=peak_memory([sys.executable, '-m', 'adapterkit', 'bench', CONFIG,
                                *common], args.threads, args.cpu_malloc),
        reference=peak_memory([sys.executable, osp.join(HERE, 'bench_reference_mtlora.py'),
                               args.checkout, *common, '--cpu-malloc', args.cpu_malloc],
                              args.threads, args.cpu_malloc))
    added = {impl: seconds[f'{impl}_train_5_tasks'] - seconds[f'{impl}_train_1_task']
             for impl in ('adapterkit', 'reference')}
    ratios = dict(
        train=seconds['adapterkit_train_4_tasks'] / seconds['reference_train_4_tasks'],
        peak_memory=memory['adapterkit'] / memory['reference'],
        merged_infer=seconds['adapterkit_infer_merged'] / seconds['reference_infer'],
        unmerged_infer=seconds['adapterkit_infer'] / seconds['reference_infer'],
        added_1_to_5_tasks=added['adapterkit'] / added['reference'])
    result = dict(seconds=seconds, peak_memory_mb=memory, added_1_to_5_tasks_s=added,
                  ratios={k: round(v, 3) for k, v in ratios.items()},
                  threads=args.threads, cpu_malloc=args.cpu_malloc, amp=args.amp,
                  load_average=os.getloadavg())
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
