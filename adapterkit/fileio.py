"""Writing files whole or not at all: the one atomic write of adapterkit.

Every file adapterkit writes for a reader to pick up later (configs and records of runs,
metrics, reports, plots, exports, converted checkpoints, compiled kernels) goes through
``atomic_write``: the content goes to a temporary file in the target's folder, is flushed
to disk (fsync), and is renamed over the target (``os.replace``, atomic on POSIX), then the
folder is synced so that the rename survives a crash too. A reader (another process, a
resumed run, DDP ranks racing to build the same kernel) sees the old file or the whole new
one, never a half-written one; a write that fails leaves the old file and no temporary.
The new file has the permissions of the one it replaces, or at least those the umask gives
a new file: some writers make their file private (safetensors writes 0o600).

The writer is a callable that receives the temporary path, so any library that writes to a
path (``torch.save``, safetensors, matplotlib, a compiler's ``-o``) uses it unchanged;
``atomic_open`` hands out a file object instead (``json.dump``, mmengine's checkpoint
saving). A write that fails for want of space or permission raises the system's error
with the target's path in it (a failing ``write()`` names no file of its own). A process
killed while writing leaves its temporary behind (``TEMPORARY`` names them; whoever holds the
folder may remove them, see ``engine/workdir.py``). This module imports nothing of adapterkit.
"""
import json
import os
import os.path as osp
import re
import stat
import uuid
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Optional

#: The name of a temporary file of ``atomic_path``; group 1 is the target's base name.
TEMPORARY = re.compile(r'\.(.+)\.[0-9a-f]{12}\.tmp')


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` to write; on leaving the block without an error it
    is synced and renamed onto ``path``, on an error it is removed. The folder of ``path``
    is created if needed. The temporary name is unique per call (``.<name>.<random>.tmp``),
    so processes writing the same file at once never mix their bytes."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:12]}.tmp')
    try:
        created = _created_mode(tmp)
        yield tmp
        _fsync(tmp)
        # the replaced file's permissions, else at least those of a file created now
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) if osp.exists(path)
                 else stat.S_IMODE(os.stat(tmp).st_mode) | created)
        os.replace(tmp, path)
        _fsync_folder(folder)
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), path) from err  # same subclass
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


def atomic_write(path: str, write: Callable[[str], Any]) -> None:
    """Write ``path`` whole or not at all: ``write(tmp)`` writes a temporary path in the
    same folder, which then replaces ``path`` (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        write(tmp)


@contextmanager
def atomic_open(path: str, binary: bool = False) -> Iterator[IO]:
    """A new file to write (text in UTF-8, or ``binary``), atomically: the file object
    writes a temporary file that replaces ``path`` when the block ends without an error."""
    with atomic_path(path) as tmp, (open(tmp, 'wb') if binary
                                    else open(tmp, 'w', encoding='utf-8')) as f:
        yield f


def write_text(path: str, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_open(path) as f:
        f.write(text)


def write_bytes(path: str, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_open(path, binary=True) as f:
        f.write(data)


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON (and a final newline) atomically."""
    write_text(path, json.dumps(data, indent=2) + '\n')


def read_json(path: str) -> Optional[Any]:
    """The JSON content of ``path``, or None where there is no such file."""
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _created_mode(tmp: str) -> int:
    """The permissions of a file created now (0o666 less the umask), learnt by creating
    ``tmp`` empty: reading the umask means setting it, which races with other threads."""
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return stat.S_IMODE(os.stat(tmp).st_mode)


def _fsync(path: str) -> None:
    """Flush a file's data to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_folder(folder: str) -> None:
    """Flush a folder's entries (the rename) to disk, where the system allows it (a folder
    cannot be opened so on Windows; some file systems refuse fsync on one)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
