"""``adapterkit compare``: every method trained under one identical pipeline, one report.

A *suite* (``compare_suite.py``) names the configs and data and derives every run's config
(``plan``), checked to differ from the suite's base config only in ``model.adapter``. This
module runs them (resuming or reusing what finished) and measures each, and
``compare_report.py`` turns their records into the report: suite -> runs -> records ->
report, each module importing only the ones before it.

Work dir: ``pretrain/``, ``single-task_<task>/seed_<k>/`` and ``<member>/seed_<k>/``, each
with ``config.py`` (the derived config), mmengine's logs and checkpoints, ``metrics.json``
and ``run.json`` (what the report is built from); the report itself is
``results.{json,csv,md}``, ``pareto.png`` and ``tasks.png`` (``compare_report.py``).

A finished run (final checkpoint and final validation metrics present) is not trained again;
an interrupted one resumes from its last checkpoint. A run that fails is recorded with its
error and the suite goes on.
"""
import copy
import glob
import os
import os.path as osp
import uuid
from typing import Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner
from safetensors.torch import save_file

from ..compat import load_checkpoint_file
from ..config import build_model
from ..datasets.synthetic import synthesize
from ..errors import MissingFileError
from ..fileio import atomic_write, read_json, write_json, write_text
from ..models.parameters import count_parameters
from .bench import bench
from .compare_report import duration_text, format_table, write_report
from .compare_suite import (BACKBONE_FILE, PRETRAIN, Run, Suite, SuiteError, config_diff,
                            load_suite, one_line, plan)
from .hooks import STATS_KEY, RunMonitorHook

# inference latency: 30 timed forward passes at batch 1 after 5 untimed ones; the report
# gives their median and quartiles (on a busy machine passes vary by 2x and more)
LATENCY_ITERS, LATENCY_WARMUP = 30, 5


# ------------------------------------------------------------------ running
def run_compare(suite_path: str, work_dir: Optional[str] = None,
                cfg_options: Optional[dict] = None, seeds: Optional[Sequence[int]] = None,
                only: Optional[Sequence[str]] = None) -> dict:
    """Train every run of a suite that has not finished yet, one after another, then write
    the report to the work dir (default ``work_dirs/compare/<suite name>``) and print its
    table. Returns the report (``compare_report.build_report``)."""
    suite = load_suite(suite_path, cfg_options)
    work_dir = work_dir or osp.join('work_dirs', 'compare', suite.name)
    prepare_data(suite.data, 'data')
    if suite.pretrain:
        prepare_data(suite.pretrain['data'], 'pretrain.data')
    runs = plan(suite, work_dir, seeds, only)
    records = []
    for index, run in enumerate(runs, 1):
        print(f'[{index}/{len(runs)}] {run.label}', flush=True)
        record = execute(run, suite)
        if run.kind == PRETRAIN:
            if record['status'] != 'ok':
                raise SuiteError(f'pretrain: failed, and every run starts from it: '
                                 f'{record["error"]}')
            export_backbone(final_checkpoint(run.cfg, run.work_dir),
                            osp.join(run.work_dir, BACKBONE_FILE))
        records.append(record)
    report = write_report(records, work_dir)
    print(f'\n{format_table(report)}\n\nreport: {work_dir}/results.md (and .json, .csv, '
          f'pareto.png, tasks.png)', flush=True)
    return report


def report_from_dirs(dirs: Sequence[str], work_dir: Optional[str] = None) -> dict:
    """Build the report from the ``run.json`` records under existing work dirs (several
    machines' halves of a suite, say) into ``work_dir`` (default: the first dir)."""
    records, where = [], {}
    for folder in dirs:
        if not osp.isdir(folder):
            raise MissingFileError(f'--from-dirs: no such folder: {folder}', file=folder)
        for path in sorted(glob.glob(osp.join(folder, '**', 'run.json'), recursive=True)):
            record = read_json(path)
            key = (record['name'], record['seed'])
            if key in where:
                raise SuiteError(f'--from-dirs: {record["name"]} seed {record["seed"]} is in '
                                 f'both {where[key]} and {path}')
            where[key] = path
            records.append(record)
    if not records:
        raise MissingFileError(f'--from-dirs: no run.json under {", ".join(dirs)}')
    work_dir = work_dir or dirs[0]
    report = write_report(records, work_dir)
    print(f'{format_table(report)}\n\nreport: {work_dir}/results.md', flush=True)
    return report


def prepare_data(data: Optional[dict], key: str) -> None:
    """Write a suite's synthetic data set if its root does not exist yet."""
    if not data or osp.isdir(data['root']):
        return
    if not data['synthesize']:
        raise SuiteError(f'{key}.root: no data set at {data["root"]}')
    print(f'writing synthetic data to {data["root"]} ({data["synthesize"]}) ...', flush=True)
    synthesize(data['root'], **data['synthesize'])


def execute(run: Run, suite: Suite) -> dict:
    """Train one run, resume it or reuse its finished result, and return its record
    (also written to ``run.json``). A failure is recorded with its error, not raised."""
    record = dict(suite=suite.name, base=suite.base, name=run.name, kind=run.kind,
                  seed=run.seed, order=run.order, config_diff=run.diff,
                  references=suite.references,
                  tasks=list(run.cfg.model.tasks) if run.cfg else list(suite.tasks),
                  adapter=run.cfg.to_dict()['model']['adapter'] if run.cfg else None)
    path = osp.join(run.work_dir, 'run.json')

    def failed(error: str, keep_dir: bool = False) -> dict:
        print(f'    failed: {error}', flush=True)
        record.update(status='failed', error=error)
        if not keep_dir:
            write_json(path, record)
        return record

    if run.error:
        return failed(run.error)
    try:
        claim_work_dir(run)
    except SuiteError as err:  # another experiment's work dir: leave it as it is
        return failed(one_line(err), keep_dir=True)
    try:
        state = run_state(run.cfg, run.work_dir)
        if state == 'finished':
            earlier = read_json(path)
            if earlier and earlier.get('status') == 'ok':
                print('    finished earlier: reused', flush=True)
                return earlier
        elif not run.selected:
            print('    not run (not among --only)', flush=True)
            return dict(record, status='not run')
        else:
            train(run, state)
        record.update(status='ok', **measure_run(run))
    except Exception as err:  # reported in the table; the suite goes on
        return failed(one_line(err))
    print(f'    done: {_summary(record)}', flush=True)
    write_json(path, record)
    return record


def claim_work_dir(run: Run) -> None:
    """Write the run's config to its work dir, or refuse a work dir that holds a run of a
    different config (resuming or reusing it would mix two experiments)."""
    path = osp.join(run.work_dir, 'config.py')
    if not osp.isfile(path):
        os.makedirs(run.work_dir, exist_ok=True)
        write_text(path, run.cfg.pretty_text)
        return
    # log_level only changes what is printed
    changed = [k for k in config_diff(Config.fromfile(path), run.cfg) if k != 'log_level']
    if changed:
        raise SuiteError(f'{run.work_dir} holds a run of another config (differs in '
                         f'{", ".join(changed[:4])}): delete it or use another --work-dir')


def final_checkpoint(cfg: Config, work_dir: str) -> str:
    """The checkpoint CheckpointHook's ``save_last`` writes at the end of training."""
    train_cfg = cfg.train_cfg
    if 'max_iters' in train_cfg:
        return osp.join(work_dir, f'iter_{train_cfg.max_iters}.pth')
    return osp.join(work_dir, f'epoch_{train_cfg.max_epochs}.pth')


def run_state(cfg: Config, work_dir: str) -> str:
    """'finished' (final checkpoint and its validation metrics), 'validate' (killed during
    the final validation), 'resume' (a checkpoint to go on from) or 'new'."""
    if osp.isfile(final_checkpoint(cfg, work_dir)):
        metrics = read_json(osp.join(work_dir, 'metrics.json')) or {}
        unit = 'iter' if 'max_iters' in cfg.train_cfg else 'epoch'
        last = cfg.train_cfg.get(f'max_{unit}s')
        done = metrics.get('split') == 'val' and metrics.get(unit) == last
        return 'finished' if done else 'validate'
    return 'resume' if osp.isfile(osp.join(work_dir, 'last_checkpoint')) else 'new'


def train(run: Run, state: str) -> None:
    """Train ``run`` in this process with mmengine's Runner (``state`` from run_state)."""
    cfg = copy.deepcopy(run.cfg)
    cfg.work_dir = run.work_dir
    # mmengine keys its logger, message hub and visualizer by experiment name: one per run.
    cfg.experiment_name = f'{run.name}-seed{run.seed}-{uuid.uuid4().hex[:8]}'
    if state == 'validate':
        print('    final validation (interrupted before)', flush=True)
        cfg.resume, cfg.load_from = True, final_checkpoint(cfg, run.work_dir)
        Runner.from_cfg(cfg).val()
        return
    cfg.resume = state == 'resume'
    if cfg.resume:
        with open(osp.join(run.work_dir, 'last_checkpoint')) as f:
            print(f'    resuming from {osp.basename(f.read().strip())}', flush=True)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(RunMonitorHook())
    runner.train()


def measure_run(run: Run) -> dict:
    """What the report needs of a finished run: parameter counts, metrics, training
    figures (from the final checkpoint) and, for a member or reference, inference latency
    (batch 1, merged where every strategy can merge)."""
    model = build_model(run.cfg)  # counting and mergeability need no weights
    params = count_parameters(model)
    metrics = read_json(osp.join(run.work_dir, 'metrics.json'))['metrics']
    primary = {name: dict(metric=task.primary_metric,
                          higher_is_better=task.metrics[task.primary_metric],
                          value=metrics[f'{name}/{task.primary_metric}'])
               for name, task in model.tasks.items()}
    meta = load_checkpoint_file(final_checkpoint(run.cfg, run.work_dir), 'cpu').get('meta', {})
    figures = dict(params=params, full_params=params['total'] - params['backbone_adapter'],
                   metrics=metrics, primary=primary, train=meta.get(STATS_KEY))
    if run.kind != PRETRAIN:
        mergeable = all(strategy.mergeable for strategy in model.adapters)
        speed = bench(osp.join(run.work_dir, 'config.py'), mode='infer', batch=1,
                      iters=LATENCY_ITERS, warmup=LATENCY_WARMUP, merged=mergeable)
        figures['inference'] = dict(
            latency_ms=round(speed['step_s'] * 1000, 2),
            latency_ms_all=[round(t * 1000, 3) for t in speed['step_s_all']],
            merged=mergeable, batch=1, img=speed['img'], device=speed['device'],
            threads=speed['threads'])
    return figures


def export_backbone(checkpoint: str, out: str) -> None:
    """Write the backbone of a Runner checkpoint as a safetensors file in timm's key
    layout (what ``SwinBackbone(pretrained=...)`` loads), unless it exists."""
    if osp.isfile(out):
        return
    state = load_checkpoint_file(checkpoint, 'cpu')['state_dict']
    backbone = {k[len('backbone.'):]: v.contiguous() for k, v in state.items()
                if k.startswith('backbone.')}
    atomic_write(out, lambda tmp: save_file(backbone, tmp))


# ------------------------------------------------------------------ helpers
def _summary(record: dict) -> str:
    parts = [f'{t} {p["metric"]} {p["value"]:.2f}' for t, p in record['primary'].items()]
    if record.get('train'):
        parts.append(f'{duration_text(record["train"]["time_s"])} training')
    return ', '.join(parts)
