"""Where the runs of ``adapterkit compare`` run: one executor interface, three executors.

``compare.py`` plans the runs, writes each run dir's ``config.py`` and ``plan.json``, and
builds the report; an executor only runs *jobs* (a run dir and an attempt token) and returns
when every one has ended. Whatever ran it, a run is the same work (``compare.execute_dir``:
train or resume, validate, measure, write ``run.json`` with the token), so planning,
resuming and reporting are the same code for every executor.

``serial`` (default)
    In this process, one run after another.
``local``
    ``max_parallel`` worker processes (``python -m adapterkit.engine.compare --serve``),
    each running one run after another with its output in ``RUN_DIR/worker.log``. On a GPU
    node each worker sees one GPU (``CUDA_VISIBLE_DEVICES``, round robin over the visible
    ones); on CPU each gets an equal share of the cores (``OMP_NUM_THREADS``, which torch
    takes as its thread count).
``slurm``
    One job per run through submitit: ``partition``, ``gpus_per_job``, ``cpus_per_job``,
    ``time_min`` and ``account``. A job of several GPUs trains with torchrun inside it. The
    job is submitit-checkpointable: preempted or timed out, it is requeued and resumes from
    the run's last complete checkpoint. Its id is kept in ``RUN_DIR/job.json``; a later
    ``compare`` waits for a job that is still queued or running instead of submitting it
    again. ``cluster='local'`` runs the jobs through submitit's local executor (real
    subprocesses, no cluster), for trying a suite out.

A worker killed outright (kill -9, out of memory) leaves no record of its attempt: the run
is reported as failed, and the next ``compare`` resumes it from its last checkpoint.

The work dir of a comparison and each run dir are locked while in use
(``workdir.lock_work_dir``): a second ``compare`` on the same work dir, or a second worker on a run, is refused in one line.
"""
import os
import os.path as osp
import select
import subprocess
import sys
import time
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional

from ..errors import ConfigError
from ..fileio import read_json, write_json

EXECUTORS = ('serial', 'local', 'slurm')
WORKER_MODULE = 'adapterkit.engine.compare'
JOB_FILE = 'job.json'
# Slurm states of a job that will still run: a later compare waits for it.
ALIVE = ('PENDING', 'RUNNING', 'REQUEUED', 'CONFIGURING', 'COMPLETING', 'RESIZING',
         'SUSPENDED')
SLURM_KEYS = ('partition', 'gpus_per_job', 'cpus_per_job', 'time_min', 'account', 'cluster')


class Job(NamedTuple):
    run_dir: str
    label: str
    attempt: str  # the token the run's record must carry to count as this job's


def new_attempt() -> str:
    return uuid.uuid4().hex[:12]


# ------------------------------------------------------------------ settings
def executor_settings(suite: dict, cli: Optional[dict]) -> dict:
    """The suite's ``executor`` with the command line's values on top, checked."""
    settings = dict(suite or {})
    settings.update({k: v for k, v in (cli or {}).items() if v is not None})
    kind = settings.setdefault('type', 'serial')
    if kind not in EXECUTORS:
        raise ConfigError(f'executor: unknown type {kind!r} (one of {", ".join(EXECUTORS)})',
                          key='executor.type')
    known = {'type', 'max_parallel'} | set(SLURM_KEYS if kind == 'slurm' else ())
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f'executor: {unknown[0]!r} is not a setting of the {kind} executor '
                          f'({", ".join(sorted(known))})', key=f'executor.{unknown[0]}')
    parallel = settings.get('max_parallel', 1)
    if not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f'executor: max_parallel must be a positive integer, got '
                          f'{parallel!r}', key='executor.max_parallel')
    return settings


def make_executor(settings: dict, work: Callable[[str, str], None]):
    """The executor ``settings`` name; ``work(run_dir, attempt)`` is the in-process worker
    (``compare.execute_dir``, or a submitit-checkpointable wrapper of it for slurm)."""
    kind = settings['type']
    if kind == 'serial':
        return SerialExecutor(work)
    if kind == 'local':
        return LocalExecutor(settings.get('max_parallel', 1))
    return SlurmExecutor(work, {k: settings[k] for k in SLURM_KEYS if k in settings})


# ------------------------------------------------------------------ executors
class _Executor:
    """The interface: ``with executor:`` (starts and stops what it needs), then ``run(jobs,
    start, total)`` once per batch, which returns when every job has ended, with ``{run
    dir: how its process ended}`` where it knows."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class SerialExecutor(_Executor):
    """Every job in this process, one after another."""

    def __init__(self, work: Callable[[str, str], None]):
        self.work = work

    def run(self, jobs: List[Job], start: int, total: int) -> Dict[str, str]:
        for index, job in enumerate(jobs, start):
            print(f'[{index}/{total}] {job.label}', flush=True)
            self.work(job.run_dir, job.attempt)
        return {}


class LocalExecutor(_Executor):
    """``max_parallel`` worker processes, each on its share of the machine, each taking one
    run after another. They start when the executor is entered, before the planning, and
    live until it is left: a worker pays the start-up of torch and mmengine once, not once
    per run, and while the planner works. A worker that dies is replaced for the runs still
    waiting."""

    def __init__(self, max_parallel: int):
        self.max_parallel = max_parallel
        self.workers: List[_Worker] = []

    def __enter__(self):
        self.workers = [_Worker(env) for env in self.slots()]
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            worker.close()

    def slots(self) -> List[dict]:
        """The environment of each worker slot: a GPU each, or a share of the cores."""
        cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                 else os.cpu_count() or 1)
        threads = str(max(1, cores // self.max_parallel))
        gpus = _visible_gpus()
        return [dict(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                     **({'CUDA_VISIBLE_DEVICES': gpus[s % len(gpus)]} if gpus else {}))
                for s in range(self.max_parallel)]

    def run(self, jobs: List[Job], start: int, total: int) -> Dict[str, str]:
        waiting = list(enumerate(jobs, start))
        workers, ends = self.workers, {}
        while waiting or any(w.job for w in workers):
            for slot, worker in enumerate(workers):
                if worker.job is None and waiting:
                    if worker.dead():
                        worker = workers[slot] = _Worker(worker.env)
                    worker.give(*waiting.pop(0), total)
            for worker in _finished(workers):
                (index, job), end = worker.job, worker.end_text()
                ends[job.run_dir] = end
                _print_end(index, total, job, end)
                worker.job = None
        return ends


class _Worker:
    """One worker process of the local executor (``compare.serve``): it reads ``RUN_DIR
    ATTEMPT`` lines on its stdin and answers each with a line on a pipe of its own, its
    output going to each run's ``worker.log``."""

    def __init__(self, env: dict):
        self.env, self.job, self.used = env, None, False
        read, write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, '-m', WORKER_MODULE, '--serve', str(write)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write,),
            env=dict(os.environ, **env), text=True)
        os.close(write)
        self.answers = os.fdopen(read)

    def give(self, index: int, job: Job, total: int) -> None:
        self.job, self.used = (index, job), True
        write_json(osp.join(job.run_dir, JOB_FILE),
                   dict(executor='local', attempt=job.attempt, pid=self.process.pid,
                        started=time.time()))
        share = self.env.get('CUDA_VISIBLE_DEVICES')
        share = f'GPU {share}' if share else f'{self.env["OMP_NUM_THREADS"]} thread(s)'
        print(f'[{index}/{total}] {job.label}: started (worker pid {self.process.pid}, '
              f'{share}; log {osp.join(job.run_dir, "worker.log")})', flush=True)
        try:
            self.process.stdin.write(f'{job.run_dir}\t{job.attempt}\n')
            self.process.stdin.flush()
        except BrokenPipeError:  # it died: its answer pipe says so
            pass

    def dead(self) -> bool:
        return self.process.poll() is not None

    def end_text(self) -> str:
        return 'ended' if not self.dead() else _exit_text(self.process.returncode)

    def close(self) -> None:
        if not self.dead():
            self.process.stdin.close()
            if not self.used:  # still starting up, maybe: nothing of its to wait for
                self.process.terminate()
            self.process.wait()
        self.answers.close()


def _finished(workers: List[_Worker]) -> List[_Worker]:
    """The busy workers whose run has ended (answered, or the worker died), waiting up to a
    second for one."""
    busy = {w.answers.fileno(): w for w in workers if w.job}
    ready, _, _ = select.select(list(busy), [], [], 1.0)
    done = []
    for fd in ready:
        if not busy[fd].answers.readline():  # end of file, not its answer: it died
            busy[fd].process.wait()
        done.append(busy[fd])
    return done


class SlurmExecutor(_Executor):
    """One submitit job per run; waits for all of them."""

    def __init__(self, work, settings: dict):
        self.work, self.settings = work, settings

    def executor(self, folder: str):
        import submitit
        cluster = self.settings.get('cluster')
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        gpus = self.settings.get('gpus_per_job', 0)
        params = dict(timeout_min=self.settings.get('time_min', 60), nodes=1,
                      tasks_per_node=1, gpus_per_node=gpus,
                      cpus_per_task=self.settings.get('cpus_per_job', 2))
        if cluster != 'local':  # slurm-only settings
            params.update({f'slurm_{k}': self.settings[k] for k in ('partition', 'account')
                           if k in self.settings})
        executor.update_parameters(**params)
        return executor

    def run(self, jobs: List[Job], start: int, total: int) -> Dict[str, str]:
        if not jobs:
            return {}
        folder = osp.join(osp.dirname(osp.dirname(jobs[0].run_dir)), 'slurm')
        executor = self.executor(folder)
        submitted = []
        for index, job in enumerate(jobs, start):
            alive = _alive_job(job.run_dir)
            if alive is not None:
                print(f'[{index}/{total}] {job.label}: job {alive.job_id} still queued or '
                      'running: waiting for it', flush=True)
                submitted.append((job._replace(attempt=read_json(
                    osp.join(job.run_dir, JOB_FILE))['attempt']), alive))
                continue
            handle = executor.submit(self.work, job.run_dir, job.attempt,
                                     self.settings.get('gpus_per_job', 0))
            write_json(osp.join(job.run_dir, JOB_FILE),
                       dict(executor='slurm', cluster=self.settings.get('cluster') or 'slurm',
                            job_id=handle.job_id, folder=osp.abspath(folder),
                            attempt=job.attempt, submitted=time.time()))
            print(f'[{index}/{total}] {job.label}: submitted job {handle.job_id}', flush=True)
            submitted.append((job, handle))
        ends = {}
        for index, (job, handle) in enumerate(submitted, start):
            while not handle.done():
                time.sleep(1.0)
            error = handle.exception()
            ends[job.run_dir] = f'job {handle.job_id} ' + (
                'ended' if error is None else str(error).strip().splitlines()[-1][:200])
            _print_end(index, total, job, ends[job.run_dir])
        return ends


def _print_end(index: int, total: int, job: Job, end: str) -> None:
    """The line of a job that ended: its record's outcome, or how its worker ended."""
    record = read_json(osp.join(job.run_dir, 'run.json')) or {}
    if record.get('attempt') != job.attempt:
        outcome = f'ended without a record ({end})'
    elif record.get('status') == 'ok':
        outcome = 'done'
    else:
        outcome = f'{record.get("status")}: {record.get("error")}'
    print(f'[{index}/{total}] {job.label}: {outcome}', flush=True)


def _alive_job(run_dir: str):
    """A Slurm job of this run (from ``job.json``) that is still queued or running."""
    info = read_json(osp.join(run_dir, JOB_FILE)) or {}
    if info.get('executor') != 'slurm' or info.get('cluster') != 'slurm':
        return None
    import submitit
    job = submitit.SlurmJob(folder=info['folder'], job_id=info['job_id'])
    return job if job.state in ALIVE else None


def _visible_gpus() -> List[str]:
    import torch
    if not torch.cuda.is_available():
        return []
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible:
        return [g.strip() for g in visible.split(',') if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _exit_text(code: int) -> str:
    return f'killed by signal {-code}' if code < 0 else f'exit code {code}'
