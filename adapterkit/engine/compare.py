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
import argparse
import copy
import glob
import os
import os.path as osp
import shutil
import sys
import uuid
import zipfile
from contextlib import contextmanager, nullcontext
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmengine.runner import Runner
from safetensors.torch import save_file
from submitit.helpers import Checkpointable
from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

from ..compat import load_checkpoint_file
from ..config import build_model
from ..datasets.synthetic import synthesize
from ..errors import MissingFileError, WorkDirLockedError
from ..fileio import atomic_write, read_json, write_json, write_text
from ..models.parameters import count_parameters
from .bench import bench
from .compare_exec import Job, executor_settings, make_executor, new_attempt
from .compare_report import duration_text, format_table, write_report
from .compare_search import choose_point, point_label, point_score
from .compare_suite import (BACKBONE_FILE, PRETRAIN, SEARCH, SEARCH_REFERENCE, Run, Suite,
                            SuiteError, config_diff, load_suite, one_line, plan)
from .hooks import STATS_KEY, RunMonitorHook
from .workdir import lock_work_dir

# inference latency: 30 timed forward passes at batch 1 after 5 untimed ones; the report
# gives their median and quartiles (on a busy machine passes vary by 2x and more)
LATENCY_ITERS, LATENCY_WARMUP = 30, 5
PLAN_FILE = 'plan.json'  # what a worker needs besides config.py: the record it fills in
RUNNER_CONFIG = 'runner_config.py'  # the config as mmengine's Runner ran it


# ------------------------------------------------------------------ running
def run_compare(suite_path: str, work_dir: Optional[str] = None,
                cfg_options: Optional[dict] = None, seeds: Optional[Sequence[int]] = None,
                only: Optional[Sequence[str]] = None, executor: Optional[dict] = None,
                paired_against: Optional[str] = None) -> dict:
    """Train every run of a suite that has not finished yet (on the suite's or ``executor``'s
    executor), then write the report to the work dir (default ``work_dirs/compare/<suite
    name>``) and print its table. Returns the report (``compare_report.build_report``)."""
    suite = load_suite(suite_path, cfg_options)
    work_dir = work_dir or osp.join('work_dirs', 'compare', suite.name)
    if paired_against is not None and paired_against not in suite.members:
        raise SuiteError(f'--paired-against: no member {paired_against!r} in {suite.path} '
                         f'(members: {", ".join(suite.members)})')
    settings = executor_settings(suite.executor, executor)
    with lock_work_dir(work_dir), make_executor(settings, RunJob()) as runner:
        prepare_data(suite.data, 'data')
        if suite.pretrain:
            prepare_data(suite.pretrain['data'], 'pretrain.data')
        session = _Session(suite, work_dir, runner)
        runs = plan(suite, work_dir, seeds, only)
        session.total = len(runs)
        session.execute([r for r in runs if r.kind == PRETRAIN])
        for run in runs:
            if run.kind == PRETRAIN:
                _export_pretrained(run, session.records[run.work_dir])
        session.execute([r for r in runs if r.kind != PRETRAIN and not r.waiting])
        if any(r.waiting for r in runs):
            runs = plan(suite, work_dir, seeds, only, chosen=session.choose(runs))
            session.execute([r for r in runs if r.work_dir not in session.records])
        records = [session.records[r.work_dir] for r in runs]
        report = write_report(records, work_dir, compare_to=paired_against)
    print(f'\n{format_table(report)}\n\nreport: {work_dir}/results.md (and the other files '
          'beside it)', flush=True)
    return report


class _Session:
    """The records of one ``compare``, filled batch by batch through the executor."""

    def __init__(self, suite: Suite, work_dir: str, executor):
        self.suite, self.work_dir, self.executor = suite, work_dir, executor
        self.records: Dict[str, dict] = {}  # run dir -> record
        self.searches: Dict[str, dict] = {}  # member -> its search's points and choice
        self.count, self.total = 0, 0

    def execute(self, runs: List[Run]) -> None:
        """Collect what needs no work (failed configs, refused or finished runs), hand the
        rest to the executor, and read back their records."""
        jobs = {}
        for run in runs:
            record = self._settled(run)
            if record is not None:
                self.records[run.work_dir] = record
                continue
            jobs[run.work_dir] = (run, Job(run.work_dir, run.label, new_attempt()))
            write_json(osp.join(run.work_dir, PLAN_FILE), self.stub(run))
        ends = self.executor.run([job for _, job in jobs.values()], self.count + 1,
                                 self.total)
        self.count += len(jobs)
        for run_dir, (run, job) in jobs.items():
            self.records[run_dir] = _collect(run, job, ends.get(run_dir), self.stub(run))

    def _settled(self, run: Run) -> Optional[dict]:
        def settled(record, line):
            self.count += 1
            print(f'[{self.count}/{self.total}] {run.label}\n    {line}', flush=True)
            return record

        record = self.stub(run)
        if run.waiting:  # its search did not finish (not selected, or no point scored)
            return settled(dict(record, status='not run', error='its search has no result'),
                           'not run: its search has no result')
        if run.error:
            return settled(_failed(run, record, run.error), f'failed: {run.error}')
        if not run.selected and not osp.isdir(run.work_dir):
            return settled(dict(record, status='not run'), 'not run (not among --only)')
        try:
            with lock_work_dir(run.work_dir):
                claimed = claim_work_dir(run, self.work_dir, write=run.selected)
                state, _ = run_state(run.cfg, run.work_dir)
        except (SuiteError, WorkDirLockedError) as err:  # another experiment's, or in use: left alone
            return settled(dict(record, status='not run', error=one_line(err)),
                           f'not run: {one_line(err)}')
        earlier = read_json(osp.join(run.work_dir, 'run.json')) if claimed else None
        if state == 'finished' and earlier and earlier.get('status') == 'ok':
            return settled(earlier, 'finished earlier: reused')
        if not run.selected:
            return settled(dict(record, status='not run'), 'not run (not among --only)')
        return None

    def choose(self, runs: List[Run]) -> Dict[str, Optional[dict]]:
        """Every searched member's best point (None where no point has a score)."""
        references = self.suite.references
        if not isinstance(references, dict):
            references = {r.name.split('_', 1)[1]: list(rec['primary'].values())[0]['value']
                          for r in runs if r.kind == SEARCH_REFERENCE
                          for rec in [self.records[r.work_dir]] if rec['status'] == 'ok'}
        chosen = {}
        for name, member in self.suite.members.items():
            points = [r for r in runs if r.kind == SEARCH and r.name == name]
            if not points:
                continue
            search = member['search']
            records = [self.records[r.work_dir] for r in points]
            best = choose_point(records, lambda rec: point_score(rec, search, references))
            chosen[name] = None if best is None else points[best].point['values']
            self.searches[name] = dict(chosen=best, references=references, points=[
                dict(index=r.point['index'], values=_named(r.point['values'], search),
                     score=point_score(rec, search, references), status=rec['status'],
                     metrics=rec.get('metrics'), error=rec.get('error'))
                for r, rec in zip(points, records)])
            print(f'search {name}: ' + (f'best point {best} ({point_label(search, chosen[name])})'
                                        if best is not None else 'no point has a score'),
                  flush=True)
        return chosen

    def stub(self, run: Run) -> dict:
        """What a run's record holds before it runs (and all a failed one holds)."""
        suite = self.suite
        search = suite.members[run.name]['search'] if run.kind in ('member', SEARCH) else None
        if search:
            search = dict(search, space=_named(search['space'], search),
                          **self.searches.get(run.name, {}) if run.kind == 'member' else {})
        return dict(suite=suite.name, base=suite.base, name=run.name, kind=run.kind,
                    seed=run.seed, order=run.order, config_diff=run.diff,
                    references=suite.references, compare_to=suite.compare_to,
                    published=suite.published.get(run.name) if run.kind == 'member' else None,
                    search=search, point=run.point and dict(
                        run.point, values=_named(run.point['values'], search)),
                    reuse_from=run.reuse_from,
                    tasks=list(run.cfg.model.tasks) if run.cfg else list(suite.tasks),
                    adapter=run.cfg.to_dict()['model']['adapter'] if run.cfg else None)


def _named(values: dict, search: dict) -> dict:
    """``{dotted key: value}`` with the keys as the suite wrote them (``lr``)."""
    return {search['names'].get(k, k): v for k, v in values.items()}


def _failed(run: Run, record: dict, error: str) -> dict:
    record = dict(record, status='failed', error=error)
    if osp.isdir(run.work_dir) or run.cfg is None:
        write_json(osp.join(run.work_dir, 'run.json'), record)
    return record


def _collect(run: Run, job: Job, end: Optional[str], stub: dict) -> dict:
    """The record the job wrote, or a failure where its worker ended without one."""
    record = read_json(osp.join(run.work_dir, 'run.json'))
    if record and record.get('attempt') == job.attempt:
        return record
    error = f'the worker ended without a record ({end or "no exit status"}): rerun to resume'
    return _failed(run, stub, error)


def _export_pretrained(run: Run, record: dict) -> None:
    if record['status'] != 'ok':
        raise SuiteError(f'pretrain: failed, and every run starts from it: '
                         f'{record.get("error")}')
    export_backbone(final_checkpoint(run.cfg, run.work_dir),
                    osp.join(run.work_dir, BACKBONE_FILE))


def report_from_dirs(dirs: Sequence[str], work_dir: Optional[str] = None) -> dict:
    """Build the report from the ``run.json`` records under existing work dirs (several
    machines' halves of a suite, say) into ``work_dir`` (default: the first dir)."""
    records, where = [], {}
    for folder in dirs:
        if not osp.isdir(folder):
            raise MissingFileError(f'--from-dirs: no such folder: {folder}', file=folder)
        for path in sorted(glob.glob(osp.join(folder, '**', 'run.json'), recursive=True)):
            record = read_json(path)
            key = (record['name'], record['kind'], record['seed'],
                   (record.get('point') or {}).get('index'))
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


def execute_dir(run_dir: str, attempt: str, launcher: str = 'none') -> dict:
    """The work of one run, whatever executor runs it: train it (or resume it, or only
    validate it again), measure it and write its record, with ``attempt``, to
    ``run.json``. Reads ``config.py`` and ``plan.json`` (written by the planner). A failure
    is recorded with its error, not raised. Under torchrun (``launcher='pytorch'``) every
    rank trains and rank 0 measures and writes."""
    record = dict(read_json(osp.join(run_dir, PLAN_FILE)) or {}, attempt=attempt)
    try:  # under torchrun, rank 0 holds the lock for all the run's processes
        with lock_work_dir(run_dir) if _rank_zero(launcher) else nullcontext():
            return _execute(run_dir, record, launcher)
    except WorkDirLockedError as err:  # another worker has it: leave its files alone
        print(f'    not run: {one_line(err)}', flush=True)
        return dict(record, status='not run', error=one_line(err))


def _execute(run_dir: str, record: dict, launcher: str) -> dict:
    run = Run(record.get('name', '?'), record.get('kind', '?'), record.get('seed', 0),
              record.get('order', 0), run_dir, reuse_from=record.get('reuse_from'))
    try:
        run.cfg = Config.fromfile(osp.join(run_dir, 'config.py'))
        state, checkpoint = run_state(run.cfg, run_dir)
        if state in ('new', 'resume') and run.reuse_from:
            state, checkpoint = _reuse_checkpoint(run)
        if state != 'finished':
            train(run, state, checkpoint, launcher)
        if not _rank_zero(launcher):
            return record
        record.update(status='ok', **measure_run(run))
    except Exception as err:  # reported in the table; the suite goes on
        if RunJob.preempted:  # its exit, turned into another error by a bare `except:`
            raise SystemExit(LOCAL_REQUEUE_RETURN_CODE) from err
        record.update(status='failed', error=one_line(err))
        print(f'    failed: {record["error"]}', flush=True)
    else:
        print(f'    done: {_summary(record)}', flush=True)
    if _rank_zero(launcher):
        write_json(osp.join(run_dir, 'run.json'), record)
    return record


class RunJob(Checkpointable):
    """A run as a submitit job: ``execute_dir`` in the job (through torchrun for several
    GPUs). Preempted or timed out, submitit requeues it with the same arguments, and it
    resumes from the run's last complete checkpoint.

    submitit's signal handler ends the job with SystemExit, which can land anywhere, e.g.
    inside mmengine's config formatting, whose bare ``except:`` turns it into a SyntaxError:
    once the job is being requeued (``preempted``), no error is recorded as the run's."""

    preempted = False  # set in the job's process when submitit requeues it

    def checkpoint(self, *args, **kwargs):
        RunJob.preempted = True
        return super().checkpoint(*args, **kwargs)

    def __call__(self, run_dir: str, attempt: str, gpus: int = 0) -> None:
        if gpus > 1:
            import subprocess
            subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                            f'--nproc_per_node={gpus}', '-m', __name__, run_dir,
                            '--attempt', attempt, '--launcher', 'pytorch'], check=True)
        else:
            execute_dir(run_dir, attempt)


def _rank_zero(launcher: str) -> bool:
    return launcher == 'none' or int(os.environ.get('RANK', '0')) == 0


def _reuse_checkpoint(run: Run):
    """final='reuse': the chosen search point's final checkpoint, copied into this run dir,
    to validate on val."""
    source = final_checkpoint(run.cfg, run.reuse_from)
    if not checkpoint_complete(source):
        raise MissingFileError(f'{run.reuse_from}: the chosen search point has no complete '
                               'final checkpoint: rerun compare to train it', file=source)
    target = final_checkpoint(run.cfg, run.work_dir)
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    return 'validate', target


def claim_work_dir(run: Run, root: str, write: bool = True) -> bool:
    """Write the run's config to its work dir (when ``write``), or refuse a work dir that
    holds a run of a different config (resuming or reusing it would mix two experiments).
    Paths into the comparison's work dir ``root`` count as equal when it has moved since
    (``_moved``). Returns whether the dir holds this run's config."""
    path = osp.join(run.work_dir, 'config.py')
    if not osp.isfile(path):
        if write:
            os.makedirs(run.work_dir, exist_ok=True)
            write_text(path, run.cfg.pretty_text)
        return write
    stored = Config.fromfile(path)
    old, new = stored.to_dict(), run.cfg.to_dict()
    # log_level only changes what is printed
    changed = [k for k in config_diff(stored, run.cfg) if k != 'log_level'
               and not _moved(_value(old, k), _value(new, k), root)]
    if changed:
        raise SuiteError(f'{run.work_dir} holds a run of another config (differs in '
                         f'{", ".join(changed[:4])}): delete it or use another --work-dir')
    if write and stored.pretty_text != run.cfg.pretty_text:
        write_text(path, run.cfg.pretty_text)  # this location's paths, for its tools
    return True


def _value(tree: dict, key: str):
    value = tree
    for part in key.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _moved(old, new, root: str) -> bool:
    """Whether ``old`` names the file that ``new`` names inside the work dir ``root``, as
    written before the work dir moved (the pretrained backbone of a pretraining stage)."""
    if not (isinstance(old, str) and isinstance(new, str)):
        return False
    inside = osp.relpath(osp.abspath(new), osp.abspath(root))
    return not inside.startswith('..') and old.replace(os.sep, '/').endswith(
        '/' + inside.replace(os.sep, '/'))


def final_checkpoint(cfg: Config, work_dir: str) -> str:
    """The checkpoint CheckpointHook's ``save_last`` writes at the end of training."""
    train_cfg = cfg.train_cfg
    if 'max_iters' in train_cfg:
        return osp.join(work_dir, f'iter_{train_cfg.max_iters}.pth')
    return osp.join(work_dir, f'epoch_{train_cfg.max_epochs}.pth')


def checkpoint_complete(path: str) -> bool:
    """Whether ``path`` is a whole checkpoint: torch's zip format ends with its central
    directory, which a file cut short (killed while it was written) lacks."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def latest_checkpoint(cfg: Config, work_dir: str) -> Optional[str]:
    """The run's last complete checkpoint (by step), ignoring ``last_checkpoint``, which
    names the file mmengine was writing, complete or not, and an absolute path that a moved
    work dir no longer has."""
    unit = 'iter' if 'max_iters' in cfg.train_cfg else 'epoch'
    found = []
    for path in glob.glob(osp.join(work_dir, f'{unit}_*.pth')):
        step = osp.basename(path)[len(unit) + 1:-len('.pth')]
        if step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        if checkpoint_complete(path):
            return path
    return None


def run_state(cfg: Config, work_dir: str):
    """``(state, checkpoint)``: 'finished' (a complete final checkpoint and its validation
    metrics), 'validate' (killed during the final validation), 'resume' (from the last
    complete checkpoint) or 'new'. A final checkpoint cut short is no progress: it is
    removed, and the run resumes from the one before."""
    final = final_checkpoint(cfg, work_dir)
    if osp.isfile(final) and not checkpoint_complete(final):
        print(f'    {osp.basename(final)} is incomplete (killed while it was written): '
              'removed', flush=True)
        os.remove(final)
    if osp.isfile(final):
        metrics = read_json(osp.join(work_dir, 'metrics.json')) or {}
        unit = 'iter' if 'max_iters' in cfg.train_cfg else 'epoch'
        last = cfg.train_cfg.get(f'max_{unit}s')
        done = metrics.get('split') == 'val' and metrics.get(unit) == last
        return ('finished' if done else 'validate'), final
    latest = latest_checkpoint(cfg, work_dir)
    return ('resume', latest) if latest else ('new', None)


def train(run: Run, state: str, checkpoint: Optional[str] = None,
          launcher: str = 'none') -> None:
    """Train ``run`` in this process with mmengine's Runner (``state`` and ``checkpoint``
    from run_state)."""
    # The Runner dumps its config beside the checkpoints under the config's file name: not
    # over config.py, which stays the run's config as planned.
    cfg = Config(copy.deepcopy(run.cfg.to_dict()), cfg_text=run.cfg.pretty_text,
                 filename=osp.join(run.work_dir, RUNNER_CONFIG))
    cfg.work_dir = run.work_dir
    # mmengine keys its logger, message hub and visualizer by experiment name: one per run.
    cfg.experiment_name = f'{run.name}-seed{run.seed}-{uuid.uuid4().hex[:8]}'
    if launcher != 'none':
        from .distributed import prepare_launch
        prepare_launch(cfg, launcher)
    if state == 'validate':
        print('    final validation (interrupted before)', flush=True)
        cfg.resume, cfg.load_from = True, checkpoint
        Runner.from_cfg(cfg).val()
        return
    cfg.resume = state == 'resume'
    cfg.load_from = checkpoint
    if cfg.resume:
        print(f'    resuming from {osp.basename(checkpoint)}', flush=True)
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


def serve(answers: int) -> None:
    """A worker of the local executor: for every ``RUN_DIR<TAB>ATTEMPT`` line on stdin, run
    it (``execute_dir``) with its output in ``RUN_DIR/worker.log``, then write the run dir
    as a line to the file descriptor ``answers``."""
    with os.fdopen(answers, 'w') as out:
        for line in sys.stdin:
            run_dir, attempt = line.rstrip('\n').split('\t')
            with _output_to(osp.join(run_dir, 'worker.log')):
                execute_dir(run_dir, attempt)
            out.write(run_dir + '\n')
            out.flush()


@contextmanager
def _output_to(path: str):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so the logging
    handlers' too) to ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, 'a') as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def main(argv: Optional[List[str]] = None) -> int:
    """The worker: ``python -m adapterkit.engine.compare RUN_DIR --attempt TOKEN`` runs one
    run; ``--serve FD`` serves the local executor (``serve``)."""
    parser = argparse.ArgumentParser(prog='python -m adapterkit.engine.compare',
                                     description='run runs of adapterkit compare')
    parser.add_argument('run_dir', nargs='?')
    parser.add_argument('--attempt')
    parser.add_argument('--launcher', default='none', choices=['none', 'pytorch'])
    parser.add_argument('--serve', type=int, metavar='FD')
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    record = execute_dir(args.run_dir, args.attempt, args.launcher)
    return 0 if record.get('status', 'ok') == 'ok' else 1


if __name__ == '__main__':
    raise SystemExit(main())
