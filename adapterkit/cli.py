"""The ``adapterkit`` command: train, test, synth, params, demo."""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction


def _default_work_dir(config: str) -> str:
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def _runner(cfg):
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg)


def cmd_train(args) -> int:
    from .config import load_config
    from .engine.optim import amp_optim_wrapper
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(args.config)
    cfg.launcher = args.launcher
    if args.amp:
        import torch
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, device)
    if args.resume is not None:
        cfg.resume = True
        # `--resume` alone picks the latest checkpoint of the work dir.
        cfg.load_from = None if args.resume == 'auto' else args.resume
    _runner(cfg).train()
    return 0


def cmd_test(args) -> int:
    from .config import load_config
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(args.config)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='SavePredictionsHook', out_dir=args.show_dir)]
    metrics = _runner(cfg).test()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)
    return 0


def cmd_synth(args) -> int:
    from .datasets.synthetic import synthesize
    synthesize(args.out, num_train=args.num_train, num_val=args.num_val, size=args.size,
               seed=args.seed)
    print(f'wrote {args.num_train} train + {args.num_val} val synthetic scenes '
          f'({args.size}px, seed {args.seed}) to {args.out}')
    return 0


def cmd_params(args) -> int:
    from .config import build_model, load_config
    from .models.parameters import count_parameters
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg)  # weights are not loaded: counting needs shapes only
    counts = count_parameters(model)
    counts['trainable_percent'] = round(100.0 * counts['trainable'] / max(counts['total'], 1), 4)
    if args.json:
        print(json.dumps(dict(config=args.config, **counts), indent=2))
        return 0
    width = max(len(k) for k in counts)
    print(args.config)
    for key, value in counts.items():
        text = f'{value:,}' if isinstance(value, int) else f'{value}%'
        print(f'  {key:<{width}}  {text:>14}')
    return 0


def cmd_demo(args) -> int:
    from .engine.demo import run_demo
    run_demo(data_root=args.data, work_dir=args.work_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='adapterkit',
        description='Parameter-efficient multi-task dense prediction on mmengine.')
    sub = parser.add_subparsers(dest='command', required=True)

    def config_args(p):
        p.add_argument('config', help='an mmengine config file (.py)')
        p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                       help='override config keys, e.g. train_cfg.max_iters=10')

    p = sub.add_parser('train', help='train a config with the mmengine Runner')
    config_args(p)
    p.add_argument('--work-dir', help='where logs and checkpoints go '
                   '(default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or from the latest checkpoint of the work dir')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision: bf16 where supported (CPU too), fp16 otherwise')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.set_defaults(func=cmd_train)

    p = sub.add_parser('test', help='evaluate a checkpoint on the test split of a config')
    config_args(p)
    p.add_argument('checkpoint')
    p.add_argument('--work-dir')
    p.add_argument('--show-dir', help='save per-task prediction images here')
    p.add_argument('--out', help='also write the metrics to this JSON file')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.set_defaults(func=cmd_test)

    p = sub.add_parser('synth', help='write the synthetic data set in the PASCAL-MT layout')
    p.add_argument('out')
    p.add_argument('--num-train', type=int, default=200)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--seed', type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('params', help='count total and trainable parameters of a config')
    config_args(p)
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_params)
    p = sub.add_parser('demo', help='the quickstart job on synthetic data: single-task '
                       'references, the multi-task model, metrics and Δm')
    p.add_argument('--data', default='data/synthetic', help='synthetic data set (written if absent)')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.set_defaults(func=cmd_demo)
    return parser


# Errors a user can fix: one line naming what is wrong, no traceback.
def _user_errors():
    from .compat import CheckpointRefusedError
    from .config import ConfigError
    return (FileNotFoundError, KeyError, ValueError, ConfigError, CheckpointRefusedError)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'adapterkit {args.command}: error: {message}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
