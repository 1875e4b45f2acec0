"""The places a run writes to: a work dir that one process holds at a time, and outputs that
are checked writable before any work is spent on them.

``lock_work_dir(work_dir)`` creates the folder and takes an exclusive ``fcntl.flock`` on
``<work_dir>/.adapterkit.lock``, which holds the holder's pid. The kernel drops the lock when
the holder's process ends, however it ends (kill -9 included), so no lock is ever stale and
nothing needs cleaning up; the file itself stays (removing it would let a third process lock
a fresh file while a second still waits on the old one). A second process asking for the
same work dir gets one line naming the folder and the holder's pid. A process may lock the
same folder again (``adapterkit compare`` holds its suite's folder and each run's); the lock
is released when the returned ``WorkDirLock`` is released as often as it was taken, or when
the process ends. Under torchrun and the other launchers only rank 0 locks (``is_rank_zero``):
the ranks of one run share its work dir, and when rank 0 refuses, the launcher stops the
others. flock works between processes of one machine; on NFS it depends on the server; on
a system without ``fcntl`` (Windows) the folder is created and not locked.

``check_writable(path, what)`` creates a folder (or the folder of a file) and writes and
removes a probe file in it, so that an unwritable ``--out`` or ``--show-dir`` is one line
before a checkpoint is evaluated, not a traceback after.

A file-system refusal here (a work dir that is a file, a read-only or full disk, a missing
permission) is an ``OutputError``: one line with the path and the system's reason.
"""
import errno
import os
import os.path as osp
import re
import uuid
from typing import Dict, Optional

from ..errors import OutputError, WorkDirLockedError
from ..fileio import TEMPORARY

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = '.adapterkit.lock'

# The launchers' variables for a process's global rank (mmengine sets RANK itself later).
_RANK_VARIABLES = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')

_held: Dict[str, 'WorkDirLock'] = {}  # real path -> the lock this process holds on it


class WorkDirLock:
    """This process's hold on a work dir; ``release()`` (or leaving a ``with`` block) lets
    go once it has been released as often as it was taken."""

    def __init__(self, path: str, handle: int):
        self.path, self.handle, self.count = path, handle, 1

    def release(self) -> None:
        self.count -= 1
        if self.count == 0:
            _held.pop(self.path, None)
            os.close(self.handle)  # closing the last descriptor drops the flock

    def __enter__(self) -> 'WorkDirLock':
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_work_dir(work_dir: str) -> WorkDirLock:
    """Create ``work_dir`` and hold it for this process (see the module docstring).

    Raises WorkDirLockedError where another process holds it, OutputError where the folder
    cannot be created or written."""
    make_folder(work_dir, 'work dir')
    path = osp.realpath(work_dir)
    if path in _held:
        _held[path].count += 1
        return _held[path]
    lock_file = osp.join(path, LOCK_FILE)
    try:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise _output_error(work_dir, 'work dir', err) from None
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        os.close(handle)
        raise WorkDirLockedError(
            f'work dir {work_dir} is in use by another adapterkit process (pid {holder}); '
            'wait for it to end, or choose another --work-dir', file=work_dir) from None
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f'{os.getpid()}\n'.encode(), 0)
    except OSError as err:
        os.close(handle)
        raise _output_error(work_dir, 'work dir', err) from None
    _held[path] = WorkDirLock(path, handle)
    return _held[path]


def is_rank_zero(launcher: str = 'none') -> bool:
    """Whether this process is rank 0 of ``launcher``'s processes (always, for 'none'),
    read from the launcher's environment, before any process group exists."""
    variable = _RANK_VARIABLES.get(launcher)
    return variable is None or int(os.environ.get(variable, '0')) == 0


def make_folder(folder: str, what: str) -> None:
    """``os.makedirs(folder)``, with a refusal as one OutputError line naming ``what``."""
    if osp.exists(folder) and not osp.isdir(folder):
        raise OutputError(f'{what} {folder} is a file, not a folder; choose another path',
                          file=folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise _output_error(folder, what, err) from None


def check_writable(path: str, what: str, folder: bool = True) -> None:
    """Check that ``path`` (a folder, or with ``folder=False`` a file to be written) can be
    written: create the folder and write a probe file in it. Raises OutputError naming
    ``what`` (``'--out'``, ``'--show-dir'``, ...) and the path."""
    if not folder and osp.isdir(path):
        raise OutputError(f'{what} {path} is a folder; name a file', file=path)
    target = path if folder else osp.dirname(osp.abspath(path))
    make_folder(target, what if folder else f'{what} {path}: its folder')
    probe = osp.join(target, f'.adapterkit-probe.{uuid.uuid4().hex[:12]}.tmp')
    try:
        with open(probe, 'wb') as f:
            f.write(b'probe')
    except OSError as err:
        raise _output_error(path, what, err) from None
    finally:
        if osp.lexists(probe):
            os.remove(probe)


def remove_temporaries(folder: str, pattern: Optional[str] = None) -> int:
    """Remove the temporary files that writes interrupted by a kill left in ``folder`` (a
    folder this process holds, so that no write of another process is under way); only the
    temporaries of files whose name matches the regex ``pattern``, if given. Returns how
    many were removed."""
    removed = 0
    for name in os.listdir(folder) if osp.isdir(folder) else ():
        match = TEMPORARY.fullmatch(name)
        if match and (pattern is None or re.fullmatch(pattern, match.group(1))):
            os.remove(osp.join(folder, name))
            removed += 1
    return removed


def _holder(handle: int) -> str:
    """The pid written in a held lock file (``unknown`` in the instant before its holder
    writes it)."""
    text = os.pread(handle, 32, 0).decode(errors='replace').strip()
    return text if text.isdigit() else 'unknown'


def _output_error(path: str, what: str, err: OSError) -> OutputError:
    reason = err.strerror or errno.errorcode.get(err.errno or 0, type(err).__name__)
    return OutputError(f'{what} {path} cannot be written: {reason}', file=path)
