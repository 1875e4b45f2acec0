"""The ``adapterkit`` command: train, test, synth, params, export, bench, bench-data,
convert, convert-mtlora, compare, demo, plugins."""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import DictAction

from .errors import AdapterkitError, ConfigError, MissingFileError
from .fileio import write_json


def _default_work_dir(config: str) -> str:
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def _runner(cfg):
    from .engine.distributed import build_runner
    return build_runner(cfg)


def cmd_train(args) -> int:
    from .config import load_config
    from .engine.distributed import end_launch, prepare_launch
    from .engine.optim import amp_optim_wrapper
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(args.config)
    prepare_launch(cfg, args.launcher)
    if args.amp:
        import torch
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, device)
    if args.resume is not None:
        cfg.resume = True
        # `--resume` alone picks the latest checkpoint of the work dir.
        cfg.load_from = None if args.resume == 'auto' else args.resume
    _runner(cfg).train()
    end_launch()
    return 0


def cmd_test(args) -> int:
    from mmengine.dist import is_main_process

    from .config import load_config
    from .engine.distributed import end_launch, prepare_launch
    if not osp.isfile(args.checkpoint):
        raise MissingFileError(f'checkpoint not found: {args.checkpoint}', file=args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(args.config)
    prepare_launch(cfg, args.launcher)
    # An adapter-only file is loaded onto the config's pretrained backbone by adapterkit,
    # not by mmengine (which would leave the backbone random and only warn).
    adapter_only = args.checkpoint.endswith('.safetensors')
    cfg.load_from = None if adapter_only else args.checkpoint
    cfg.resume = False
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='SavePredictionsHook', out_dir=args.show_dir)]
    runner = _runner(cfg)
    if adapter_only:
        from mmengine.model import is_model_wrapper

        from .models.checkpoint import load_adapter
        load_adapter(runner.model.module if is_model_wrapper(runner.model) else runner.model,
                     args.checkpoint)
    metrics = runner.test()
    if args.out and is_main_process():  # every rank gets the gathered metrics; one writes
        write_json(args.out, metrics)
    end_launch()
    return 0


def cmd_synth(args) -> int:
    from .datasets.synthetic import synthesize
    synthesize(args.out, num_train=args.num_train, num_val=args.num_val, size=args.size,
               seed=args.seed, style=args.style, layout=args.layout)
    size = 'x'.join(map(str, args.size)) if isinstance(args.size, tuple) else f'{args.size}px'
    layout = 'NYUD-MT' if args.layout == 'nyud' else 'PASCAL-MT'
    print(f'wrote {args.num_train} train + {args.num_val} val synthetic scenes '
          f'({size}, seed {args.seed}, {layout} layout) to {args.out}')
    return 0


def _synth_size(text: str):
    """'S' (square) or 'HxW'."""
    parts = text.lower().split('x')
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f'expected S or HxW (e.g. 128 or 96x128), got {text!r}')
    return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))


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


def cmd_export(args) -> int:
    from .config import build_model, load_config
    from .models.checkpoint import load_weights, save_adapter, save_merged
    if args.task and not args.merge:
        raise ConfigError('export: --task picks the task of a merged export; use it with '
                          '--merge', option='--task')
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg).eval()
    load_weights(model, args.checkpoint)
    if args.merge:
        save_merged(model, args.out, cfg.pretty_text, task=args.task)
    else:
        save_adapter(model, args.out, cfg.pretty_text)
    kind = 'merged model' if args.merge else 'adapter-only weights'
    kind += f' of task {args.task}' if args.task else ''
    print(f'wrote the {kind} of {args.checkpoint} to {args.out}')
    return 0


def cmd_bench(args) -> int:
    from .engine.bench import bench, format_report
    tasks = args.tasks.split(',') if args.tasks else None
    result = bench(args.config, mode=args.mode, batch=args.batch, img=args.img,
                   iters=args.iters, warmup=args.warmup, merged=args.merged,
                   threads=args.threads, tasks=tasks, cfg_options=args.cfg_options,
                   amp=args.amp)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def cmd_bench_data(args) -> int:
    from .datasets.bench import bench_data, format_data_report
    result = bench_data(args.config, workers=args.workers, images=args.images,
                        repeats=args.repeats, batch=args.batch, cfg_options=args.cfg_options)
    print(json.dumps(result, indent=2) if args.json else format_data_report(result))
    return 0


def cmd_convert(args) -> int:
    import torch

    from .adapters.mtlora.convert import read_reference_checkpoint
    from .config import build_model
    from .fileio import atomic_write
    from .models.checkpoint import convert_foreign
    model = build_model(args.config)
    # MTLoRA's reference code and its forks (TADFormer) pickle a yacs config beside the
    # weights: read without running any of its code
    state = convert_foreign(model, read_reference_checkpoint(args.checkpoint), args.checkpoint)
    meta = dict(converted_from=osp.abspath(args.checkpoint), config=args.config,
                strategies=[type(s).__name__ for s in model.adapters])
    # a failed write never leaves a half file under `out`
    atomic_write(args.out, lambda tmp: torch.save(dict(state_dict=state, meta=meta), tmp))
    print(f"wrote {len(state)} tensors of {args.checkpoint} in the layout of {args.config} "
          f'to {args.out}')
    return 0


def cmd_convert_mtlora(args) -> int:
    from .adapters.mtlora import convert_checkpoint
    check, meta = None, {}
    if args.config:  # the result must fit the config's model exactly, or nothing is written
        from .config import build_model
        from .models.checkpoint import check_keys

        def fits(state):
            check_keys(args.checkpoint, state, build_model(args.config).state_dict())
        check, meta = fits, dict(config=args.config)
    result = convert_checkpoint(args.checkpoint, args.out, check=check, meta=meta)
    fits = f', checked against {args.config}' if args.config else ''
    print(f"wrote {result['tensors']} tensors of {args.checkpoint} in adapterkit's layout to "
          f'{args.out}{fits}')
    return 0


def cmd_compare(args) -> int:
    from .engine.compare import report_from_dirs, run_compare
    if args.from_dirs:
        report_from_dirs(args.from_dirs, args.work_dir)
        return 0
    if not args.suite:
        raise ConfigError('compare needs a SUITE file, or --from-dirs DIR...', option='suite')
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f'--seeds must be at least 1, got {args.seeds}', option='--seeds')
    run_compare(args.suite, work_dir=args.work_dir, cfg_options=args.cfg_options,
                seeds=None if args.seeds is None else list(range(args.seeds)),
                only=args.only.split(',') if args.only else None)
    return 0


# `make demo`: the quickstart comparison suite.
DEMO_SUITE = 'adapterkit::compare/quickstart.py'


def cmd_demo(args) -> int:
    from .engine.compare import run_compare
    run_compare(DEMO_SUITE, work_dir=args.work_dir)
    return 0


def cmd_plugins(args) -> int:
    from .plugins import GROUP, load_plugins
    found = load_plugins(report=False)  # shown below, not also as warnings
    if args.json:
        print(json.dumps(dict(plugins=[p.as_dict() for p in found.plugins],
                              errors=found.errors), indent=2))
        return 0
    if not found.plugins:
        print(f'no plugins installed (entry-point group {GROUP})')
    for plugin in found.plugins:
        state = {'failed': f'failed: {plugin.error}',
                 'disabled': 'disabled by ADAPTERKIT_PLUGINS / ADAPTERKIT_DISABLE_PLUGINS'}
        print(f'{plugin.name}  {plugin.distribution} {plugin.version}  '
              f'{state.get(plugin.status, plugin.status)}')
        for registry, name in plugin.modules:
            print(f'    {registry:<10} {name}')
        for folder in plugin.config_dirs:
            print(f'    {"configs":<10} {plugin.name}:: = {folder}')
    for error in found.errors:
        print(f'error: {error}')
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

    p = sub.add_parser('synth', help='write a synthetic data set in the PASCAL-MT layout '
                       '(or NYUD-MT with --layout nyud); docs/data.md')
    p.add_argument('out', help='the folder to write (replaced if an earlier synth wrote it)')
    p.add_argument('--layout', choices=['pascal', 'nyud'], default='pascal',
                   help='PASCAL-MT scenes or NYUD-MT rooms (default: pascal)')
    p.add_argument('--num-train', type=int, default=200, help='train images (default: 200)')
    p.add_argument('--num-val', type=int, default=50, help='val images (default: 50)')
    p.add_argument('--size', type=_synth_size, default=128, metavar='S|HxW',
                   help='image size, square or height x width (default: 128)')
    p.add_argument('--seed', type=int, default=0,
                   help='the same seed writes the same bytes (default: 0)')
    p.add_argument('--style', choices=['default', 'pretrain'], default='default',
                   help='pretrain: a disjoint scene distribution for a pretraining stage')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('params', help='count total and trainable parameters of a config')
    config_args(p)
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_params)

    p = sub.add_parser('export', help='write a merged model or the adapter-only weights of a '
                       'checkpoint (.safetensors; see docs/strategies.md)')
    config_args(p)
    p.add_argument('checkpoint', help='a runner checkpoint (.pth) or an adapter-only file')
    p.add_argument('out', help='the .safetensors file to write')
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument('--merge', action='store_true', help='fold the adaptation into the '
                      'backbone: plain timm backbone keys + heads')
    kind.add_argument('--adapter-only', action='store_true', help='only what is not the frozen '
                      'pretrained backbone, loadable on top of it')
    p.add_argument('--task', help="with --merge: merge this task's weights, with its head "
                   'only (a model whose tasks have weights of their own, PerTask, needs it)')
    p.set_defaults(func=cmd_export)
    p = sub.add_parser('bench', help='median step time, throughput and peak memory of a '
                       "config's model on this device (random weights and data)")
    config_args(p)
    p.add_argument('--mode', choices=['train', 'infer'], default='train',
                   help='train: forward + backward + AdamW step; infer: forward, no_grad')
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--img', type=int, help="image size (default: the config's)")
    p.add_argument('--iters', type=int, default=5, help='timed steps (the median is reported)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps first')
    p.add_argument('--merged', action='store_true', help='merge the adapters first (infer)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    p.add_argument('--tasks', help="comma-separated tasks instead of the config's")
    p.add_argument('--amp', action='store_true',
                   help='mixed precision, as train --amp (bf16 autocast on CPU)')
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser('bench-data', help="images per second of a config's train data "
                       'pipeline (loading, transforms, packing), per worker and per CPU-second')
    config_args(p)
    p.add_argument('--workers', type=int, default=0,
                   help='DataLoader worker processes (default: 0, in this process)')
    p.add_argument('--images', type=int, default=64,
                   help='the first N images of the train set are read each pass (default: 64)')
    p.add_argument('--repeats', type=int, default=3,
                   help='timed passes after one untimed pass; the median is reported (default: 3)')
    p.add_argument('--batch', type=int, help="batch size (default: the config's, at most N)")
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_bench_data)

    p = sub.add_parser('convert', help="turn a checkpoint of a method's reference code into "
                       "an adapterkit checkpoint, through the config's strategies (MTLoRA's, "
                       "a plugin's)")
    p.add_argument('config', help='the config whose model the checkpoint is for')
    p.add_argument('checkpoint', help='the reference checkpoint (.pth)')
    p.add_argument('out', help='the adapterkit checkpoint to write (.pth, for load_from)')
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser('convert-mtlora', help='turn a checkpoint of the MTLoRA reference code '
                       '(scale-lab/MTLoRA) into an adapterkit checkpoint')
    p.add_argument('checkpoint', help='the reference checkpoint (.pth)')
    p.add_argument('out', help='the adapterkit checkpoint to write (.pth, for load_from)')
    p.add_argument('--config', help='check that the result fits the model of this config')
    p.set_defaults(func=cmd_convert_mtlora)

    p = sub.add_parser('compare', help='train every member of a comparison suite under one '
                       'identical pipeline; report table, Pareto and per-task plots '
                       '(docs/comparing.md)')
    p.add_argument('suite', nargs='?', help='a suite file (configs/compare/*.py)')
    p.add_argument('--work-dir', help='where the runs and the report go (default: '
                   'work_dirs/compare/<suite name>; with --from-dirs: the first DIR)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                   help="override config keys of every run, on top of the suite's options")
    p.add_argument('--seeds', type=int, metavar='N', help="seeds 0..N-1 instead of the suite's")
    p.add_argument('--only', metavar='NAMES', help='comma-separated members (and/or '
                   'single-task) to train now; the report still covers the whole suite')
    p.add_argument('--from-dirs', nargs='+', metavar='DIR', help='only build the report from '
                   'the finished runs under these work dirs')
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser('demo', help='the quickstart comparison suite on synthetic data '
                       '(configs/compare/quickstart.py): every method, table and plots')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser('plugins', help='installed plugins: what each registered, its configs, '
                       'and why one failed to load')
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_plugins)
    return parser


def _error_line(err: BaseException) -> Optional[str]:
    """The one line for an error a user can fix: an adapterkit error (see errors.py), or a
    file-system error with its path (a missing, unreadable or misplaced file). None for
    anything else, which is a bug to show with its traceback."""
    if isinstance(err, AdapterkitError):
        return ' '.join(str(err).split())
    if isinstance(err, OSError) and err.filename is not None:
        where = f'{err.filename} -> {err.filename2}' if err.filename2 else err.filename
        return f'{err.strerror or type(err).__name__}: {where}'
    return None


# Commands that train or evaluate; on CPU they keep freed memory (engine/cpu_malloc.py).
_COMPUTING = ('train', 'test', 'bench', 'bench-data', 'compare', 'demo')


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in _COMPUTING:
            import torch

            from .engine.cpu_malloc import configure_cpu_malloc
            if not torch.cuda.is_available():
                configure_cpu_malloc()
        return args.func(args)
    except (AdapterkitError, OSError) as err:
        line = _error_line(err)
        if line is None:
            raise
        print(f'adapterkit {args.command}: error: {line}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
