"""The ``adapterkit`` command: train, test, synth, params, export, inspect, bench,
bench-data, convert, convert-mtlora, compare, demo, plugins.

Building the parser imports nothing heavy (no torch, mmengine or timm), so that ``--help``
answers at once; each command imports what it needs when it runs.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

from .errors import AdapterkitError, ConfigError, MissingFileError
from .fileio import write_json


def _default_work_dir(config: str) -> str:
    """``work_dirs/<config's base name>``, also for a ``PROVIDER::path`` config."""
    name = osp.basename(config.rpartition('::')[2])
    return osp.join('work_dirs', osp.splitext(name)[0])


def _runner(cfg):
    from .engine.distributed import build_runner
    return build_runner(cfg)


_held = []  # the work dirs this command locked, released when it ends (see main)


def _hold_work_dir(work_dir: str, launcher: str) -> None:
    """Lock the work dir for the rest of the command (engine/workdir.py): a second command
    on it is refused. Rank 0 locks for all the ranks of a launch."""
    from .engine.workdir import is_rank_zero, lock_work_dir
    if is_rank_zero(launcher):
        _held.append(lock_work_dir(work_dir))


def cmd_train(args) -> int:
    from .config import load_config
    from .engine.distributed import end_launch, prepare_launch
    from .engine.optim import amp_optim_wrapper
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(args.config)
    _hold_work_dir(cfg.work_dir, args.launcher)
    prepare_launch(cfg, args.launcher)
    if args.amp:
        import torch
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper, device)
    if args.resume is not None:
        cfg.resume = True
        # `--resume` alone picks the latest checkpoint of the work dir.
        cfg.load_from = None if args.resume == 'auto' else args.resume
        finished = _finished(cfg)
        if finished:  # the Runner would replay the data loader up to the end, then stop
            print(finished)
            return 0
    _runner(cfg).train()
    end_launch()
    return 0


def _finished(cfg) -> Optional[str]:
    """Where a resumed run has nothing left to train: a line saying so, read from the
    checkpoint's meta (its tensors mapped, not read); None otherwise, and where the file
    cannot be read (the Runner then reports it)."""
    checkpoint = cfg.load_from
    if checkpoint is None:  # mmengine's choice: the one its last_checkpoint file names
        pointer = osp.join(cfg.work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            checkpoint = f.read().strip()
    from .compat import load_checkpoint_file
    try:
        meta = load_checkpoint_file(checkpoint, map_location='cpu', mmap=True).get('meta', {})
    except Exception:  # noqa: BLE001 (only a shortcut: the Runner reads it for real)
        return None
    train_cfg = cfg.get('train_cfg') or {}
    for unit, key in (('iter', 'max_iters'), ('epoch', 'max_epochs')):
        done, total = meta.get(unit), train_cfg.get(key)
        if isinstance(done, int) and isinstance(total, int) and done >= total:
            return (f'{cfg.work_dir}: finished: {checkpoint} is at {unit} {done} of {total} '
                    f'(train_cfg.{key}); nothing to resume (raise {key} to train on)')
    return None


def cmd_test(args) -> int:
    from mmengine.dist import is_main_process
    from mmengine.model import is_model_wrapper

    from .engine.distributed import end_launch, prepare_launch
    from .engine.hooks import json_number
    from .engine.workdir import check_writable
    from .models.files import load_weights
    # `test FILE` alone: the config is the one the file stores
    config, checkpoint = (args.config, args.checkpoint) if args.checkpoint else (None, args.config)
    if not osp.exists(checkpoint):
        raise MissingFileError(f'checkpoint not found: {checkpoint}', file=checkpoint)
    cfg = _test_config(config, checkpoint, args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or _default_work_dir(
        (config or checkpoint).rstrip('/'))
    if args.out:  # where the results go is checked before anything is evaluated
        check_writable(args.out, '--out', folder=False)
    if args.show_dir:
        check_writable(args.show_dir, '--show-dir')
    _hold_work_dir(cfg.work_dir, args.launcher)
    prepare_launch(cfg, args.launcher)
    # adapterkit loads every kind of checkpoint itself, strictly (models/files.py): mmengine
    # would only warn about keys that do not fit, and leave an adapter's backbone random
    cfg.load_from, cfg.resume = None, False
    if args.show_dir:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='SavePredictionsHook', out_dir=args.show_dir)]
    runner = _runner(cfg)
    loaded = load_weights(runner.model.module if is_model_wrapper(runner.model) else runner.model,
                          checkpoint, allow_other_backbone=args.allow_other_backbone)
    # as after mmengine's own loading: hooks read what the checkpoint says (SaveMetricsHook
    # the iteration its weights were trained to)
    runner.call_hook('after_load_checkpoint', checkpoint=loaded)
    metrics = runner.test()
    if is_main_process():  # every rank gets the gathered metrics; one writes and prints
        if args.out:
            write_json(args.out, {k: json_number(v) for k, v in metrics.items()})
        print(f'{args.checkpoint}\n{metrics_table(metrics)}')
    del runner  # end_launch frees the process groups it holds
    end_launch()
    return 0


def _test_config(config: Optional[str], checkpoint: str, cfg_options):
    """The config given, or else the one the checkpoint stores (with ``cfg_options``)."""
    import tempfile

    from .config import load_config
    from .models.files import stored_config
    if config:
        return load_config(config, cfg_options)
    text = stored_config(checkpoint)
    if not text:
        raise ConfigError(f'{checkpoint}: stores no config; give it: adapterkit test CONFIG '
                          f'{checkpoint}', file=checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, osp.splitext(osp.basename(checkpoint.rstrip('/')))[0] + '.py')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        return load_config(path, cfg_options)


def metrics_table(metrics: dict) -> str:
    """The metrics of ``test``, one indented line each (printed whatever the log level)."""
    if not metrics:
        return '  no metrics'
    width = max(len(key) for key in metrics)
    return '\n'.join(f'  {key:<{width}}  {value:.4f}' if isinstance(value, float)
                     else f'  {key:<{width}}  {value}' for key, value in metrics.items())


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
    from .models.checkpoint import save_adapter, save_merged
    from .models.files import load_weights
    from .models.peft import save_peft
    if args.task and not args.merge:
        raise ConfigError('export: --task picks the task of a merged export; use it with '
                          '--merge', option='--task')
    if args.format == 'peft' and args.merge:
        raise ConfigError('--merge writes adapterkit files only; a peft folder holds the '
                          'adapter (leave --merge out)', option='--merge')
    if args.format == 'safetensors' and not (args.merge or args.adapter_only):
        raise ConfigError('export needs --merge or --adapter-only (or --format peft)',
                          option='--merge')
    cfg = load_config(args.config, args.cfg_options)
    model = build_model(cfg).eval()
    load_weights(model, args.checkpoint, allow_other_backbone=args.allow_other_backbone)
    if args.format == 'peft':
        save_peft(model, args.out, cfg.pretty_text)
        kind = 'peft adapter folder'
    elif args.merge:
        save_merged(model, args.out, cfg.pretty_text, task=args.task)
        kind = 'merged model' + (f' of task {args.task}' if args.task else '')
    else:
        save_adapter(model, args.out, cfg.pretty_text)
        kind = 'adapter-only weights'
    print(f'wrote the {kind} of {args.checkpoint} to {args.out}')
    return 0


def cmd_inspect(args) -> int:
    from .models.files import describe
    fields = describe(args.file)
    if args.json:
        print(json.dumps(fields, indent=2, default=str))
        return 0
    config = fields.pop('config', None)
    width = max(len(k) for k in fields)
    print(args.file)
    for key, value in fields.items():
        if value not in (None, [], {}, ''):
            print(f'  {key:<{width}}  {value}')
    if config:
        print('  config:')
        print('\n'.join('    ' + line for line in config.rstrip().splitlines()))
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
    executor = dict(type=args.executor, max_parallel=args.max_parallel,
                    partition=args.partition, gpus_per_job=args.gpus_per_job,
                    time_min=args.time_min, account=args.account)
    run_compare(args.suite, work_dir=args.work_dir, cfg_options=args.cfg_options,
                seeds=None if args.seeds is None else list(range(args.seeds)),
                only=args.only.split(',') if args.only else None,
                executor={k: v for k, v in executor.items() if v is not None},
                paired_against=args.paired_against)
    return 0


# `make demo`: the quickstart comparison suite.
DEMO_SUITE = 'adapterkit::compare/quickstart.py'


def cmd_demo(args) -> int:
    from .engine.compare import run_compare
    run_compare(DEMO_SUITE, work_dir=args.work_dir)
    return 0


def cmd_plugins(args) -> int:
    from .plugins import load_plugins
    found = load_plugins(report=False)  # shown below, not also as warnings
    if args.json:
        print(json.dumps(dict(plugins=[p.as_dict() for p in found.plugins],
                              errors=found.errors), indent=2))
    else:
        print(_plugins_text(found))
    if args.check:
        problems = [f'{p.describe()} failed: {p.error}' for p in found.plugins
                    if p.status == 'failed'] + found.errors
        for problem in problems:
            print(f'adapterkit plugins: check failed: {problem}', file=sys.stderr)
        return 1 if problems else 0
    return 0


def _plugins_text(found) -> str:
    from .plugins import GROUP
    lines = [] if found.plugins else [f'no plugins installed (entry-point group {GROUP})']
    for plugin in found.plugins:
        state = {'failed': f'failed: {plugin.error}',
                 'disabled': 'disabled by ADAPTERKIT_PLUGINS / ADAPTERKIT_DISABLE_PLUGINS'}
        lines.append(f'{plugin.name}  {plugin.distribution} {plugin.version}  '
                     f'{state.get(plugin.status, plugin.status)}')
        lines += [f'    {registry:<10} {name}' for registry, name in plugin.modules]
        lines += [f'    {"configs":<10} {plugin.name}:: = {folder}'
                  for folder in plugin.config_dirs]
    return '\n'.join(lines + [f'error: {error}' for error in found.errors])


def _key_value(text: str) -> str:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'{text!r} is not KEY=VALUE')
    return text


def cfg_options(parser: argparse.ArgumentParser, text: str) -> None:
    """``--cfg-options KEY=VALUE ...``, kept as text while parsing; ``main`` reads the
    values as mmengine's ``DictAction`` does (``1``, ``1e-3``, ``True``, ``None``, ``a,b``,
    ``[(1,2),(3,4)]``)."""
    parser.add_argument('--cfg-options', nargs='+', action='extend', type=_key_value,
                        metavar='KEY=VALUE', help=f'{text}; values as in mmengine configs '
                        '(numbers, True/False/None, lists as a,b or [a,b], tuples as (a,b))')


def _read_cfg_options(items: Optional[List[str]]) -> Optional[dict]:
    """``['a.b=1', ...]`` -> ``{'a.b': 1, ...}``; a later key wins, as on mmengine's CLI."""
    if items is None:
        return None
    from mmengine.config import DictAction
    parsed = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='options')(None, parsed, items)
    return parsed.options


LAUNCHERS = ['none', 'pytorch', 'slurm', 'mpi']
LAUNCHER_HELP = ('how the processes were started: none (one process), pytorch (torchrun), '
                 'slurm (srun), mpi (mpirun); see docs/distributed.md (default: %(default)s)')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='adapterkit',
        description='Parameter-efficient multi-task dense prediction on mmengine.')
    sub = parser.add_subparsers(dest='command', required=True)

    def config_args(p):
        p.add_argument('config', help='an mmengine config file (.py), or PROVIDER::path for '
                       'a config adapterkit or a plugin ships (adapterkit::quickstart/...)')
        cfg_options(p, 'override config keys, e.g. train_cfg.max_iters=10')

    p = sub.add_parser('train', help='train a config with the mmengine Runner')
    config_args(p)
    p.add_argument('--work-dir', help='where logs and checkpoints go '
                   "(default: work_dirs/<config file's base name>)")
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or from the latest checkpoint of the work dir; a '
                   'finished run says so and exits')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision: bf16 where supported (CPU too), fp16 otherwise')
    p.add_argument('--launcher', choices=LAUNCHERS, default='none', help=LAUNCHER_HELP)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser('test', help='evaluate a checkpoint on the test split of a config and '
                       'print its metrics')
    config_args(p)
    p.add_argument('checkpoint', nargs='?', help='a runner checkpoint, adapter-only file, '
                   'merged export, peft adapter folder or MTLoRA reference checkpoint; with '
                   'no CONFIG before it (`test FILE`), the config the file stores is used')
    p.add_argument('--work-dir', help='where the test log and metrics.json go '
                   "(default: work_dirs/<config file's base name>)")
    p.add_argument('--show-dir', help='save per-task prediction images here')
    p.add_argument('--out', help='also write the metrics to this JSON file')
    p.add_argument('--allow-other-backbone', action='store_true', help='load an adapter '
                   'onto other pretrained weights than it was trained on')
    p.add_argument('--launcher', choices=LAUNCHERS, default='none', help=LAUNCHER_HELP)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser('synth', help='write a synthetic data set in the PASCAL-MT layout '
                       '(or NYUD-MT with --layout nyud); docs/data.md')
    p.add_argument('out', help='the folder to write (new, empty, or an earlier output of '
                   'synth, which is replaced)')
    p.add_argument('--layout', choices=['pascal', 'nyud'], default='pascal',
                   help='PASCAL-MT scenes or NYUD-MT rooms (default: %(default)s)')
    p.add_argument('--num-train', type=int, default=200, metavar='N',
                   help='training images (default: %(default)s)')
    p.add_argument('--num-val', type=int, default=50, metavar='N',
                   help='validation images (default: %(default)s)')
    p.add_argument('--size', type=_synth_size, default=128, metavar='S|HxW',
                   help='image size in pixels, square or height x width, at least 32 '
                   '(default: %(default)s)')
    p.add_argument('--seed', type=int, default=0,
                   help='the same seed writes byte-identical files (default: %(default)s)')
    p.add_argument('--style', choices=['default', 'pretrain'], default='default',
                   help='the scenes: default, or pretrain (other backgrounds, more objects: '
                   'data for a pretraining stage) (default: %(default)s)')
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser('params', help='count total and trainable parameters of a config')
    config_args(p)
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_params)

    p = sub.add_parser('export', help='write a merged model, the adapter-only weights or a '
                       'Hugging Face peft folder of a checkpoint (see docs/strategies.md)')
    config_args(p)
    p.add_argument('checkpoint', help='a runner checkpoint, an adapter-only file, a peft '
                   'folder, ...')
    p.add_argument('out', help='the .safetensors file (or, with --format peft, folder) to write')
    kind = p.add_mutually_exclusive_group()
    kind.add_argument('--merge', action='store_true', help='fold the adaptation into the '
                      'backbone: plain timm backbone keys + heads')
    kind.add_argument('--adapter-only', action='store_true', help='only what is not the frozen '
                      'pretrained backbone, loadable on top of it')
    p.add_argument('--task', help="with --merge: merge this task's weights, with its head "
                   'only (a model whose tasks have weights of their own, PerTask, needs it)')
    p.add_argument('--format', choices=['safetensors', 'peft'], default='safetensors',
                   help='peft: a folder that peft.PeftModel.from_pretrained loads onto a timm '
                   'Swin (LoRA, DoRA), plus the heads for adapterkit')
    p.add_argument('--allow-other-backbone', action='store_true',
                   help='read an adapter trained on other pretrained weights')
    p.set_defaults(func=cmd_export)

    p = sub.add_parser('inspect', help='what a checkpoint file or folder holds: kind, '
                       'strategy, ranks, tasks, counts, base weights, config')
    p.add_argument('file', help='a runner checkpoint, adapter-only file, merged export, peft '
                   'adapter folder or MTLoRA reference checkpoint')
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser('bench', help='median step time, throughput and peak memory of a '
                       "config's model on this device (random weights and data)")
    config_args(p)
    p.add_argument('--mode', choices=['train', 'infer'], default='train',
                   help='train: forward + backward + AdamW step; infer: forward, no_grad '
                   '(default: %(default)s)')
    p.add_argument('--batch', type=int, default=2, help='images per step (default: '
                   '%(default)s)')
    p.add_argument('--img', type=int, help="image size (default: the config's)")
    p.add_argument('--iters', type=int, default=5, help='timed steps, the median is reported '
                   '(default: %(default)s)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps first (default: '
                   '%(default)s)')
    p.add_argument('--merged', action='store_true', help='merge the adapters first (infer)')
    p.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    p.add_argument('--tasks', help="comma-separated tasks (default: the config's)")
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
    cfg_options(p, "override config keys of every run, on top of the suite's options")
    p.add_argument('--seeds', type=int, metavar='N', help="seeds 0..N-1 instead of the suite's")
    p.add_argument('--only', metavar='NAMES', help='comma-separated members (and/or '
                   'single-task) to train now; the report still covers the whole suite')
    p.add_argument('--from-dirs', nargs='+', metavar='DIR', help='only build the report from '
                   'the finished runs under these work dirs')
    p.add_argument('--paired-against', metavar='MEMBER', help='compare every member with '
                   "this one seed by seed (default: the suite's compare_to)")
    run = p.add_argument_group('where the runs run (default: the suite\'s executor, else '
                               'serial: one after another in this process)')
    run.add_argument('--executor', choices=['serial', 'local', 'slurm'],
                     help='local: worker processes on this machine; slurm: a submitit job '
                     'per run')
    run.add_argument('--max-parallel', type=int, metavar='N', help='local: runs at once (a '
                     'GPU each, or an equal share of the CPU cores)')
    run.add_argument('--partition', help='slurm: the partition')
    run.add_argument('--gpus-per-job', type=int, metavar='G', help='slurm: GPUs per run '
                     '(several: torchrun inside the job)')
    run.add_argument('--time-min', type=int, metavar='MIN', help='slurm: time limit per job, '
                     'in minutes (a job cut off is requeued and resumes)')
    run.add_argument('--account', help='slurm: the account to charge')
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser('demo', help='the quickstart comparison suite on synthetic data '
                       '(configs/compare/quickstart.py): every method, table and plots')
    p.add_argument('--work-dir', default='work_dirs/demo', help='where the runs and the report '
                   'go; a rerun reuses the finished runs there (default: %(default)s)')
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser('plugins', help='installed plugins: what each registered, its configs, '
                       'and why one failed to load')
    p.add_argument('--json', action='store_true', help='machine-readable output')
    p.add_argument('--check', action='store_true', help='exit with status 1, saying why on '
                   'stderr, when a plugin failed to load or discovery found a problem')
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


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (so a BrokenPipeError came from our
    output, not from a bug elsewhere): the system flags its end with POLLERR."""
    import select
    if not hasattr(select, 'poll'):
        return True  # no poll (Windows): the broken pipe is taken to be stdout's
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if 'cfg_options' in args:
        args.cfg_options = _read_cfg_options(args.cfg_options)
    try:
        if args.command in _COMPUTING:
            import torch

            from .engine.cpu_malloc import configure_cpu_malloc
            if not torch.cuda.is_available():
                configure_cpu_malloc()
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        # The reader went away (`adapterkit params ... | head`): stop quietly, as Unix tools
        # do, with the status of a process ended by SIGPIPE. Python would also complain when
        # it flushes stdout on exit, so what is left goes to /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13)
    except (AdapterkitError, OSError) as err:
        line = _error_line(err)
        if line is None:
            raise
        print(f'adapterkit {args.command}: error: {line}', file=sys.stderr)
        return 2
    finally:
        while _held:
            _held.pop().release()


if __name__ == '__main__':
    sys.exit(main())
