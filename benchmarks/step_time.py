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
import sys

import torch
from steps import REPO, alternate, model_of, train_step

BASELINE = 'configs/mtlora/mtlora_swin-t_r64_pascal-448.py'
CONFIGS = ['configs/hyperformer/hyperformer_swin-t_pascal-448.py',
           'configs/polyhistor/polyhistor_swin-t_r8_pascal-448.py',
           'configs/polyhistor/polyhistor-lite_swin-t_r8_pascal-448.py',
           'tadformer::tadformer-static_swin-t_r64_pascal-448.py',
           'tadformer::tadformer-dynamic_swin-t_r64_pascal-448.py']


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
    steps = {name: train_step(model_of(name, args.img), images, args.img) for name in names}
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
