"""Reading data files: decoders that name the file they fail on, and a completeness check.

Every reader here raises ``DatasetError`` with one line that starts with the file's path, so a
broken file in a data set of thousands is found at once. Images and label maps are decoded
with OpenCV (about twice as fast as PIL's decode plus its copy into numpy); palette PNGs,
which OpenCV would turn into colours, go through PIL to keep their indices.

``check_file`` looks at a file's header and length only (tens of microseconds), so a data set
checks every file it will read when it is built, before training starts. It catches what
copying and downloading leave behind: an empty or truncated file. Truncation is exact for
PNG (the IEND chunk ends the file), MAT level 5 (the data elements must add up to the file's
length) and NPY (the header gives the array's size); a JPEG must start with a start-of-image
marker and have its end-of-image marker in its last kilobyte (bytes after it are tolerated,
as decoders do; entropy-coded data cannot contain the marker). Damage inside a complete file
is reported when the file is read, still naming it.
"""
import io
import os
import struct
import warnings
from typing import Iterable, List, Optional

import cv2
import numpy as np
import scipy.io
from PIL import Image

from ..errors import DataError
from ..fileio import write_bytes

JPEG_START, JPEG_END = b'\xff\xd8', b'\xff\xd9'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_END = b'IEND\xaeB`\x82'
_TAIL = 1024  # where a JPEG's end-of-image marker must be


class DatasetError(DataError):
    """A data file is truncated or cannot be decoded; the message names it (``file`` too).

    torch's DataLoader re-raises a worker's error as ``DatasetError(<worker traceback>)``;
    the message is then the traceback's last line, so a user still reads one line.
    """

    def __init__(self, message: str, **fields):
        if message.startswith('Caught ') and 'Original Traceback' in message:
            message = message.rstrip().splitlines()[-1].split(f'{type(self).__name__}: ', 1)[-1]
        super().__init__(message, **fields)


# ----------------------------------------------------------------------------- checks

def check_files(paths: Iterable[str], what: str) -> None:
    """Check every file (``check_file``); one error naming the first bad one and the count."""
    problems: List[tuple] = []
    for path in paths:
        problem = check_file(path)
        if problem:
            problems.append((path, problem))
    if problems:
        more = f' ({len(problems) - 1} more file(s) with problems)' if len(problems) > 1 else ''
        raise DatasetError(f'{what}: {problems[0][1]}{more}', file=problems[0][0])


def check_file(path: str) -> str:
    """'' when ``path`` looks complete, else one line naming it and what is wrong."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return f'{path}: empty file'
        with open(path, 'rb') as f:
            return _CHECKS.get(os.path.splitext(path)[1].lower(), _no_check)(f, size, path)
    except OSError as err:
        return f'{path}: cannot read ({err.strerror or err})'


def _no_check(f, size, path) -> str:
    return ''


def _check_jpeg(f, size, path) -> str:
    if f.read(2) != JPEG_START:
        return f'{path}: not a JPEG file (no start-of-image marker)'
    f.seek(max(0, size - _TAIL))
    if JPEG_END not in f.read():
        return f'{path}: truncated JPEG (no end-of-image marker in its last {_TAIL} bytes)'
    return ''


def _check_png(f, size, path) -> str:
    if f.read(8) != PNG_SIGNATURE:
        return f'{path}: not a PNG file (bad signature)'
    f.seek(max(0, size - len(PNG_END)))
    if f.read() != PNG_END:
        return f'{path}: truncated PNG (it does not end with the IEND chunk)'
    return ''


def _check_mat(f, size, path) -> str:
    header = f.read(128)
    if header[:10] == b'MATLAB 7.3':
        return ''  # an HDF5 file; scipy cannot read it, which the loader reports
    if len(header) < 128 or header[126:128] not in (b'IM', b'MI'):
        return f'{path}: not a MATLAB 5 .mat file (bad header)'
    order = '<' if header[126:128] == b'IM' else '>'
    offset = 128
    while offset < size:
        f.seek(offset)
        tag = f.read(8)
        if len(tag) < 8:
            break
        kind, nbytes = struct.unpack(order + 'II', tag)
        if kind >> 16:  # small data element: type and data packed into the 8-byte tag
            offset += 8
        else:  # miCOMPRESSED (15) elements are not padded to 8 bytes
            offset += 8 + nbytes + (0 if kind == 15 else -nbytes % 8)
    if offset != size:
        return f'{path}: truncated .mat file ({size} bytes, its elements need {offset})'
    return ''


def _check_npy(f, size, path) -> str:
    try:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
    except ValueError:
        return f'{path}: not a .npy file (bad header)'
    if dtype.hasobject:
        return ''
    need = f.tell() + int(np.prod(shape)) * dtype.itemsize
    if size < need:
        return f'{path}: truncated .npy file ({size} bytes, its {shape} array needs {need})'
    return ''


_CHECKS = {'.jpg': _check_jpeg, '.jpeg': _check_jpeg, '.png': _check_png,
           '.mat': _check_mat, '.npy': _check_npy}


# ----------------------------------------------------------------------------- readers

def _read_bytes(path: str) -> bytes:
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:
        raise DatasetError(f'{path}: cannot read ({err.strerror or err})', file=path) from None


def _checked(path: str, data: bytes) -> bytes:
    """``data`` after the completeness check of ``check_file`` (free: it is in memory)."""
    check = _CHECKS.get(os.path.splitext(path)[1].lower(), _no_check)
    problem = check(io.BytesIO(data), len(data), path) if data else f'{path}: empty file'
    if problem:
        raise DatasetError(problem, file=path)
    return data


def _decode(path: str, flags: int, data: Optional[bytes] = None) -> np.ndarray:
    data = _checked(path, _read_bytes(path) if data is None else data)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise DatasetError(f'{path}: cannot be decoded as an image', file=path)
    return array


def read_rgb(path: str) -> np.ndarray:
    """An HxWx3 uint8 RGB image (JPEG or PNG; grey images are expanded)."""
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_label_png(path: str) -> np.ndarray:
    """A single-channel uint8 label map; a palette PNG gives its indices, not its colours."""
    data = _read_bytes(path)
    if data[:8] == PNG_SIGNATURE and data[25:26] == b'\x03':  # IHDR colour type 3: palette
        try:
            with Image.open(io.BytesIO(_checked(path, data))) as image:
                label = np.asarray(image)
        except OSError as err:
            raise DatasetError(f'{path}: cannot be decoded as an image ({err})',
                               file=path) from None
    else:
        label = _decode(path, cv2.IMREAD_UNCHANGED, data)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f'{path}: expected a single-channel 8-bit label png, got '
                           f'{label.dtype} {label.shape}', file=path)
    return label


def read_mat(path: str, variable: str) -> np.ndarray:
    """One variable of a MATLAB .mat file."""
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as err:
        raise DatasetError(f'{path}: cannot be read as a .mat file ({err})',
                           file=path) from None
    if variable not in mat:
        raise DatasetError(f'{path}: no variable {variable!r} (variables: '
                           f'{sorted(k for k in mat if not k.startswith("__"))})', file=path)
    return mat[variable]


def read_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f'{path}: cannot be read as a .npy file ({err})',
                           file=path) from None



# ----------------------------------------------------------------------------- derived cache

class DerivedCache:
    """Label maps derived from slow-to-parse files (a human-parts map rasterised from a
    PASCAL-Part .mat), kept as PNG files under ``folder``.

    An entry is named after its source file and the source's size and modification time
    (``<kind>/<stem>.<size>.<mtime_ns>.png``), so a changed source is never served from an old
    entry, and written atomically (``fileio``), so concurrent data loader workers and
    interrupted runs never leave a half-written entry. Where ``folder`` cannot be written (a
    read-only data set), one warning says so and the maps are derived on every read.
    """

    def __init__(self, folder: Optional[str]):
        self.folder = folder

    def get(self, kind: str, source: str, derive) -> np.ndarray:
        """The cached map for ``source``, or ``derive()`` (then cached)."""
        if not self.folder:
            return derive()
        try:
            stat = os.stat(source)
        except OSError as err:
            raise DatasetError(f'{source}: cannot read ({err.strerror or err})',
                               file=source) from None
        stem = os.path.splitext(os.path.basename(source))[0]
        path = os.path.join(self.folder, kind, f'{stem}.{stat.st_size}.{stat.st_mtime_ns}.png')
        try:
            with open(path, 'rb') as f:
                cached = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)
            if cached is not None:
                return cached
        except OSError:
            pass  # not cached yet
        array = derive()
        self._write(path, array)
        return array

    def _write(self, path: str, array: np.ndarray) -> None:
        try:
            ok, png = cv2.imencode('.png', array)
            if not ok:
                raise OSError(f'cv2.imencode cannot encode a {array.dtype} {array.shape} map')
            write_bytes(path, png.tobytes())  # atomic: workers never read half an entry
        except OSError as err:
            warnings.warn(f'data cache {self.folder} cannot be written ({err}); label maps are '
                          f'derived on every read (set the dataset\'s cache_dir to a writable '
                          f'folder to cache them)')
            self.folder = None
