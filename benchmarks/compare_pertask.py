"""Per-task LoRA against four single-task LoRA models, measured side by side.

    python benchmarks/compare_pertask.py [--threads 2] [--iters 5] [--img 448] [--batch 2]
        [--device cpu] [--profile] [--out FILE]

Swin-T, LoRA rank 4 on qkv, proj, fc1 and fc2, the four PASCAL tasks, random weights and
data. One training step (forward, the task losses, backward, AdamW) of
``PerTask(LoRA)`` (``configs/pertask/pertask-lora_swin-t_r4_pascal-448.py``: the four task
streams in one batched forward) against four steps of single-task LoRA models
(``configs/lora/lora_swin-t_r4_pascal-448.py`` with one task each) run one after another on
the same batch: the work of training the four tasks separately. Both live in one process and
alternate (one warm-up each), so both see the same machine load; medians of ``iters``.
The target (issue 14): the per-task step takes at most 0.8 of the four.

``--profile`` also runs each once under torch's profiler and prints the ops that take the
most time in each, to say where the time goes. Prints the figures and the ratio as JSON;
``--out`` writes them.
"""
import argparse
import json
import sys

import torch
from steps import REPO, alternate, model_of, train_step

PER_TASK = 'configs/pertask/pertask-lora_swin-t_r4_pascal-448.py'
SINGLE = 'configs/lora/lora_swin-t_r4_pascal-448.py'
FOUR = ['semseg', 'human_parts', 'sal', 'normals']


def profile(step, rows=15):
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--img', type=int, default=448)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--device', default='cpu', help="where the steps run ('cuda' on a "
                        'GPU: benchmarks/gpu_check.sh)')
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--out', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    sys.path.insert(0, REPO)
    import adapterkit  # noqa: F401
    from adapterkit.engine.cpu_malloc import configure_cpu_malloc
    torch.set_num_threads(args.threads)
    configure_cpu_malloc()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.img, args.img, device=args.device)

    per_task = train_step(model_of(PER_TASK, args.img, FOUR), images, args.img)
    singles = [train_step(model_of(SINGLE, args.img, [task]), images, args.img) for task in FOUR]

    def four_single_task_steps():
        for step in singles:
            step()

    medians, times = alternate({'per_task_step': per_task,
                                'four_single_task_steps': four_single_task_steps}, args.iters)
    result = dict(medians, ratio=round(medians['per_task_step']
                                       / medians['four_single_task_steps'], 3),
                  all_seconds={k: [round(t, 3) for t in v] for k, v in times.items()},
                  threads=args.threads, img=args.img, batch=args.batch, device=args.device)
    print(json.dumps(result), flush=True)
    if args.profile:
        print('per-task step:\n' + profile(per_task))
        print('single-task step (semseg):\n' + profile(singles[0]))
    if args.out:
        from adapterkit.fileio import write_json
        write_json(args.out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
