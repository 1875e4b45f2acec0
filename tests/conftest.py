"""Fixtures shared by the tests that drive the real ``adapterkit`` command."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# The torch threads of the suite and of every process it starts (they inherit them): 2 unless
# set (`make test` runs two pytest-xdist workers of one thread each). The tests' models are
# small: more threads than that only slow them.
os.environ.setdefault('OMP_NUM_THREADS', '2')


def _run_adapterkit(*args, check=True):
    proc = subprocess.run([sys.executable, '-m', 'adapterkit', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'adapterkit {args[0]} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def _data_options(root, max_iters):
    return ['--cfg-options',
            f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=4',
            'test_dataloader.batch_size=4',
            f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
            'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']


def _val_scalars(work_dir):
    lines = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            lines += [json.loads(line) for line in f if 'semseg/mIoU' in line]
    assert lines, f'no validation metrics logged under {work_dir}'
    return lines[-1]


@pytest.fixture(scope='session')
def cli():
    """``cli('train', CONFIG, ...)`` runs the adapterkit command in a fresh process, as a
    user does; a non-zero exit fails the test unless ``check=False``."""
    return _run_adapterkit


@pytest.fixture(scope='session')
def data_options():
    """``data_options(root, max_iters)``: ``--cfg-options`` for a short run on ``root``
    (batch 2, validation at the end, a checkpoint every 2 iterations)."""
    return _data_options


@pytest.fixture(scope='session')
def val_scalars():
    """``val_scalars(work_dir)``: the last validation metrics the Runner logged."""
    return _val_scalars


@pytest.fixture(scope='session')
def synth_root(tmp_path_factory):
    """A small synthetic PASCAL-MT data set (8 train, 4 val, 128 px) written by the CLI."""
    root = str(tmp_path_factory.mktemp('synthetic'))
    proc = _run_adapterkit('synth', root, '--num-train', '8', '--num-val', '4', '--size', '128',
                           '--seed', '3')
    assert 'wrote 8 train + 4 val' in proc.stdout
    return root


TINY_SWIN = dict(type='SwinBackbone', img_size=64, embed_dim=16, depths=(1, 1, 1, 1),
                 num_heads=(1, 2, 2, 4), window_size=4)


def _tiny_model(adapter=None, pretrained=None, tasks=('semseg', 'normals')):
    from mmengine.registry import init_default_scope

    from adapterkit.registry import MODELS
    init_default_scope('adapterkit')
    return MODELS.build(dict(type='MultiTaskModel', tasks=list(tasks), adapter=adapter,
                             backbone=dict(TINY_SWIN, pretrained=pretrained),
                             head=dict(type='HRNetHead')))


@pytest.fixture(scope='session')
def tiny_model():
    """``tiny_model(adapter, pretrained=None)``: a MultiTaskModel on a one-block-per-stage Swin
    (width 16, window 4, 64 px) with HRNet heads for semseg and normals."""
    return _tiny_model


@pytest.fixture
def c_compiler(monkeypatch):
    """Skip the test where no C compiler ($CC, else cc) can build adapterkit's kernels; where
    one can, the kernels are on for the test (they are what it tests), also when the suite
    runs with ``ADAPTERKIT_NATIVE=0`` to keep them out of everything else."""
    from adapterkit.layers import native
    if native.compiler() is None:
        pytest.skip('no C compiler ($CC, else cc) to build the C kernels')
    monkeypatch.delenv(native.ENV, raising=False)


@pytest.fixture(params=['pytorch', 'kernels'])
def native_kernels(request, monkeypatch):
    """Run a test with adapterkit's C kernels off (PyTorch ops), then on (skipped without a
    C compiler; with one, the kernels have to build): answers whether they are on."""
    if request.param == 'pytorch':
        monkeypatch.setenv('ADAPTERKIT_NATIVE', '0')
    else:
        request.getfixturevalue('c_compiler')
        monkeypatch.delenv('ADAPTERKIT_NATIVE', raising=False)
    return request.param == 'kernels'


# Another process that locks a work dir with the real engine/workdir.py and keeps it. The
# package's __init__ files (torch, mmengine: seconds to import) are skipped: workdir.py needs
# only errors.py and fileio.py.
_HOLD = textwrap.dedent("""
    import os, sys, time, types
    for name, folder in (('adapterkit', sys.argv[1]),
                         ('adapterkit.engine', os.path.join(sys.argv[1], 'engine'))):
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__path__ = [folder]
    from adapterkit.engine.workdir import lock_work_dir
    lock_work_dir(sys.argv[2])
    print('held', flush=True)
    time.sleep(600)
""")


@pytest.fixture
def lock_holder():
    """``lock_holder(work_dir)``: another process that has locked ``work_dir`` (killed at the
    end of the test); an AssertionError with its stderr where it could not lock it."""
    started = []

    def start(work_dir):
        proc = subprocess.Popen([sys.executable, '-c', _HOLD, osp.join(REPO, 'adapterkit'),
                                 str(work_dir)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        started.append(proc)
        if proc.stdout.readline().strip() != 'held':
            raise AssertionError(proc.communicate()[1])
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()
