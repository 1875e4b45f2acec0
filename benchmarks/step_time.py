"""Training-step time of any configs next to a baseline's, measured side by side.

    python benchmarks/step_time.py [CONFIG ...] [--baseline CONFIG] [--threads 2]
        [--iters 5] [--img 448] [--batch 2] [--out FILE]

Each CONFIG is a config path (relative to the repository, or absolute) or a plugin's
``PROVIDER::relative/path.py``; default: HyperFormer, Polyhistor and Polyhistor-Lite at
Swin-T 448 on PASCAL (issue 20), and TADFormer r=64 with its static and its dynamic filter
where its plugin (plugins/adapterkit-tadformer) is installed. The baseline, default MTLoRA r=64
(``configs/mtlora/mtlora_swin-t_r64_pascal-448.py``), runs in the same process. Every model is
built from its config with random weights (no pretrained file), the four PASCAL tasks, at
``--img`` px; one training step is the forward, the task losses, backward and an AdamW step
on the same random batch and targets. The steps run in turn (one warm-up each), so all see
the same machine load; the figures are medians of ``iters``, and each config's ratio to the
baseline is printed (a ratio, not a time, is what carries over between machines).

Prints the figures as JSON; ``--out`` writes them.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BASELINE = 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py'
CONFIGS = ['configs/hyperformer/hyperformer_swin-t_pascal-448.py',
           'configs/polyhistor/polyhistor_swin-t_r8_pascal-448.py',
           'configs/polyhistor/polyhistor-lite_swin-t_r8_pascal-448.py',
           'tadformer::tadformer-static_swin-t_r64_pascal-448.py',
           'tadformer::tadformer-dynamic_swin-t_r64_pascal-448.py']


def model_of(config, img):
    """The model of ``config`` (a path or ``PROVIDER::path``) at ``img`` px, random weights."""
    from adapterkit.config import build_model, load_config
    if '::' not in config and not osp.isabs(config):
        config = osp.join(REPO, config)
    cfg = load_config(config)
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
    parser.add_argument('configs', nargs='*', default=CONFIGS,
                        help='configs to time (paths or PROVIDER::path)')
    parser.add_argument('--baseline', default=BASELINE)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--img', type=int, default=448)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--out', help='also write the results to this JSON file')
    args = parser.parse_args(argv)

    sys.path.insert(0, REPO)
    import adapterkit  # noqa: F401
    from adapterkit.engine.cpu_malloc import configure_cpu_malloc
    from adapterkit.plugins import load_plugins
    providers = load_plugins().config_providers()  # PROVIDER::path configs, strategies
    if args.configs is CONFIGS:  # a default plugin config only where its plugin is installed
        args.configs = [c for c in CONFIGS if '::' not in c or c.split('::')[0] in providers]
    torch.set_num_threads(args.threads)
    configure_cpu_malloc()
    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.img, args.img)

    names = [args.baseline] + [c for c in args.configs if c != args.baseline]
    steps = {name: step_of(model_of(name, args.img), images, args.img) for name in names}
    medians, times = alternate(steps, args.iters)
    base = medians[args.baseline]
    result = dict(
        baseline=args.baseline,
        seconds={name: round(m, 3) for name, m in medians.items()},
        ratio_to_baseline={name: round(m / base, 3) for name, m in medians.items()},
        all_seconds={name: [round(t, 3) for t in ts] for name, ts in times.items()},
        threads=args.threads, img=args.img, batch=args.batch, iters=args.iters)
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        from adapterkit.fileio import write_json
        write_json(args.out, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
