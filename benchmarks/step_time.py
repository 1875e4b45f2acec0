"""Training step time of the methods of issue 20, each next to MTLoRA r64, measured side by side.

    python benchmarks/step_time.py [--threads 2] [--iters 5] [--img 448] [--batch 2]
        [--configs CONFIG ...] [--out FILE]

Swin-T, the four PASCAL tasks, random weights and data. One training step (forward, the
task losses, backward, AdamW) of each config's model; by default MTLoRA r64
(``configs/mtlora/mtlora_swin-t_r64_pascal-448.py``, the reference point) and TADFormer r64
with its static and its dynamic filter (the plugin plugins/adapterkit-tadformer, which must
be installed). More configs (``PROVIDER::path`` or a path in the checkout) join with
``--configs``. Every model lives in one process and their steps alternate (one warm-up
each), so all see the same machine load; medians of ``iters``, and each one's ratio to
MTLoRA r64's. Prints the figures as JSON; ``--out`` writes them.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MTLORA = 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py'
DEFAULT = ['tadformer::tadformer-static_swin-t_r64_pascal-448.py',
           'tadformer::tadformer-dynamic_swin-t_r64_pascal-448.py']


def model_of(config, img):
    from adapterkit.config import build_model, load_config
    cfg = load_config(config if '::' in config else osp.join(REPO, config))
    cfg.model.backbone.pretrained = None
    cfg.model.backbone.img_size = img
    return build_model(cfg).train()


def step_of(model, images, img):
    """One training step of ``model`` on ``images`` with random targets."""
    from adapterkit.engine.bench import random_targets
    targets = random_targets(model.tasks, len(images), img, 'cpu')
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        logits = model(images, mode='tensor')
        loss = sum(task.loss_weight * task.loss(logits[name], targets[name])
                   for name, task in model.tasks.items())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def alternate(steps, iters):
    """Median seconds per step of each of ``steps``, run in turn after one warm-up each."""
    times = {name: [] for name in steps}
    for step in steps.values():
        step()
    for _ in range(iters):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default: 2)')
    parser.add_argument('--iters', type=int, default=5, help='timed steps (default: 5)')
    parser.add_argument('--img', type=int, default=448, help='image size (default: 448)')
    parser.add_argument('--batch', type=int, default=2, help='images per step (default: 2)')
    parser.add_argument('--configs', nargs='+', default=DEFAULT,
                        help='configs timed next to MTLoRA r64 (default: TADFormer r64, '
                             'static and dynamic filter)')
    parser.add_argument('--out', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    sys.path.insert(0, REPO)
    import adapterkit  # noqa: F401
    from adapterkit.engine.cpu_malloc import configure_cpu_malloc
    torch.set_num_threads(args.threads)
    configure_cpu_malloc()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.img, args.img)
    steps = {config: step_of(model_of(config, args.img), images, args.img)
             for config in [MTLORA, *args.configs]}
    medians, times = alternate(steps, args.iters)
    result = dict(seconds={k: round(v, 3) for k, v in medians.items()},
                  ratio_to_mtlora_r64={k: round(v / medians[MTLORA], 3)
                                       for k, v in medians.items()},
                  all_seconds={k: [round(t, 3) for t in v] for k, v in times.items()},
                  threads=args.threads, img=args.img, batch=args.batch, iters=args.iters)
    print(json.dumps(result, indent=2), flush=True)
    if args.out:
        from adapterkit.fileio import write_json
        write_json(args.out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
