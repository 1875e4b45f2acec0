"""The work dir lock and the output checks of engine/workdir.py, with real processes and
real files (``fcntl.flock`` between processes, kill -9, a file where a folder belongs)."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from adapterkit import fileio
from adapterkit.engine.workdir import (LOCK_FILE, check_writable, is_rank_zero, lock_work_dir,
                                       remove_temporaries)
from adapterkit.errors import OutputError, WorkDirLockedError
from adapterkit.fileio import write_text


def test_a_work_dir_held_by_another_process_is_refused_naming_it_and_the_holder(
        tmp_path, lock_holder):
    proc = lock_holder(tmp_path / 'run')
    with pytest.raises(WorkDirLockedError, match=rf'work dir {tmp_path}/run is in use by '
                       rf'another adapterkit process \(pid {proc.pid}\); wait for it'):
        lock_work_dir(str(tmp_path / 'run'))


def test_the_lock_ends_with_its_holder_even_under_kill_9(tmp_path, lock_holder):
    proc = lock_holder(tmp_path / 'run')
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = lock_work_dir(str(tmp_path / 'run'))  # no stale lock left behind
    assert open(tmp_path / 'run' / LOCK_FILE).read().strip() == str(os.getpid())
    lock.release()


def test_one_process_may_take_its_own_lock_again_and_releases_it_last(tmp_path, lock_holder):
    outer = lock_work_dir(str(tmp_path / 'suite'))
    inner = lock_work_dir(str(tmp_path / 'suite' / '..' / 'suite'))  # the same folder
    assert inner is outer
    inner.release()
    with pytest.raises(AssertionError, match='WorkDirLockedError'):
        lock_holder(tmp_path / 'suite')  # still held once
    outer.release()
    with lock_work_dir(str(tmp_path / 'suite')):
        pass


def test_a_work_dir_that_is_a_file_or_lies_under_one_is_one_line(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match=rf'^work dir {tmp_path}/file is a file, not a '
                                          'folder; choose another path$'):
        lock_work_dir(str(tmp_path / 'file'))
    with pytest.raises(OutputError, match=rf'^work dir {tmp_path}/file/run cannot be written: '
                                          'Not a directory$'):
        lock_work_dir(str(tmp_path / 'file' / 'run'))


def test_outputs_are_checked_writable_without_leaving_anything(tmp_path):
    check_writable(str(tmp_path / 'show'), '--show-dir')
    check_writable(str(tmp_path / 'out' / 'metrics.json'), '--out', folder=False)
    assert os.listdir(tmp_path / 'show') == [] and os.listdir(tmp_path / 'out') == []
    (tmp_path / 'file').write_text('x')
    with pytest.raises(OutputError, match='--show-dir .*/file is a file, not a folder'):
        check_writable(str(tmp_path / 'file'), '--show-dir')
    with pytest.raises(OutputError, match='--out .*/show is a folder; name a file'):
        check_writable(str(tmp_path / 'show'), '--out', folder=False)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_a_folder_without_write_permission_is_one_line(tmp_path):
    locked = tmp_path / 'locked'
    locked.mkdir(mode=0o555)
    with pytest.raises(OutputError, match=r'--show-dir .*/locked/show cannot be written: '
                                          'Permission denied'):
        check_writable(str(locked / 'show'), '--show-dir')


def test_only_rank_zero_of_a_launch_locks(monkeypatch):
    monkeypatch.setenv('RANK', '1')
    assert not is_rank_zero('pytorch') and is_rank_zero('none')
    monkeypatch.setenv('SLURM_PROCID', '0')
    assert is_rank_zero('slurm')


KILLED_WRITE = textwrap.dedent("""
    import importlib.util, os, signal, sys
    spec = importlib.util.spec_from_file_location('fileio', sys.argv[1])
    fileio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fileio)

    def half_then_kill_9(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        os.kill(os.getpid(), signal.SIGKILL)
    fileio.atomic_write(sys.argv[2], half_then_kill_9)
""")


def killed_while_writing(path):
    """Write ``path`` atomically in another process, killed (-9) in the middle."""
    proc = subprocess.run([sys.executable, '-c', KILLED_WRITE, fileio.__file__, str(path)])
    assert proc.returncode == -signal.SIGKILL


def test_temporaries_of_interrupted_writes_are_removed_and_nothing_else(tmp_path):
    write_text(str(tmp_path / 'iter_2.pth'), 'whole')
    killed_while_writing(tmp_path / 'iter_4.pth')
    killed_while_writing(tmp_path / 'notes.txt')
    assert len(os.listdir(tmp_path)) == 3  # iter_2.pth and two temporaries
    assert remove_temporaries(str(tmp_path), r'iter_(\d+)\.pth') == 1
    left = sorted(os.listdir(tmp_path))
    assert left[0].startswith('.notes.txt.') and left[1] == 'iter_2.pth'
    assert (tmp_path / 'iter_2.pth').read_text() == 'whole'
