"""Build and load adapterkit's C kernels for the CPU.

A kernel is one C file in the package, with plain C functions on float pointers (no
PyTorch headers, so it compiles in about a second). It is compiled on first use by the
system's C compiler (``$CC``, else ``cc``) for this machine's CPU, into a cache directory
(``$ADAPTERKIT_CACHE/native``, default ``~/.cache/adapterkit/native``) under a name keyed by
the source, the flags, the compiler and the CPU, so that a changed kernel, compiler or
machine (a shared home directory on a cluster) gets its own build; the build is written
atomically (``fileio.atomic_write``), so processes building at once (DDP ranks) never load a
half-written file. It is loaded with ctypes, which releases the GIL during a call.

Where no kernel can be built (no compiler, a compile error) ``load`` warns once and
answers None, and callers compute the same with PyTorch ops; ``ADAPTERKIT_NATIVE=0`` turns
the kernels off (to compare both paths, or to rule the kernels out).
``ADAPTERKIT_NATIVE_MARCH`` names the CPU to build for (gcc's ``-march``, default
``native``): ``x86-64-v3`` builds what an AVX2 machine without AVX-512 runs, to test the
kernels' results as vectorized for another CPU, or for a cluster of mixed CPUs.
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..fileio import atomic_write

ENV = 'ADAPTERKIT_NATIVE'
MARCH_ENV = 'ADAPTERKIT_NATIVE_MARCH'
# -fopenmp: the kernels split rows over OpenMP threads; loaded into a PyTorch process, the
# library binds to PyTorch's own libgomp (same soname), so it shares PyTorch's thread pool.
# The math flags keep IEEE infinities and NaNs but let gcc reorder float sums, which it
# needs to vectorize reductions.
FLAGS = ('-O3', '-fopenmp', '-shared', '-fPIC', '-fno-math-errno', '-fno-trapping-math',
         '-fno-signed-zeros', '-fassociative-math')

_bound: Dict[Path, Any] = {}  # per source: what bind answered, or None
_lock = threading.Lock()


def enabled() -> bool:
    """Whether C kernels may be used (``ADAPTERKIT_NATIVE`` is not '0')."""
    return os.environ.get(ENV, '1') != '0'


def cache_dir() -> Path:
    root = os.environ.get('ADAPTERKIT_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join(Path.home(), '.cache'), 'adapterkit')
    return Path(root) / 'native'


def load(source: Path, bind: Callable[[ctypes.CDLL], Any] = lambda library: library):
    """``bind(library)`` for the compiled library of the C file ``source`` (built on first
    use), called once per process and kept (``bind`` declares the functions' argument types
    and wraps them); None (with one warning) where the library cannot be built, or where
    ``ADAPTERKIT_NATIVE=0``."""
    source = Path(source)
    if not enabled():
        return None
    with _lock:
        if source not in _bound:
            try:
                _bound[source] = bind(ctypes.CDLL(str(build(source))))
            except OSError as error:
                warnings.warn(f'adapterkit: C kernel {source.name} unavailable ({error}); '
                              f'using PyTorch ops instead (slower on CPU)', RuntimeWarning)
                _bound[source] = None
        return _bound[source]


def flags() -> tuple:
    """The compiler flags: FLAGS and ``-march=$ADAPTERKIT_NATIVE_MARCH`` (default native)."""
    return (f'-march={os.environ.get(MARCH_ENV) or "native"}',) + FLAGS


def _compiler_name() -> str:
    return os.environ.get('CC') or 'cc'


def compiler() -> Optional[str]:
    """The path of the C compiler kernels are built with (``$CC``, else ``cc``), or None."""
    return shutil.which(_compiler_name())


def build(source: Path) -> Path:
    """Compile ``source`` into the cache (unless there already) and return the library's
    path; raises OSError naming the compiler and its first error line."""
    source, executable = Path(source), compiler()
    if executable is None:
        raise OSError(f'no C compiler {_compiler_name()!r} on PATH (set CC)')
    version = subprocess.run([executable, '--version'], capture_output=True, text=True).stdout
    options = flags()
    key = hashlib.sha256('\0'.join([source.read_text(), ' '.join(options), version,
                                    _cpu()]).encode()).hexdigest()[:16]
    target = cache_dir() / f'{source.stem}-{key}.so'
    if target.exists():
        return target
    atomic_write(str(target), lambda partial: _compile(executable, options, source, partial))
    return target


def _compile(executable: str, options: tuple, source: Path, out: str) -> None:
    result = subprocess.run([executable, *options, '-o', out, str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if 'error' in line]
        raise OSError(f'{_compiler_name()} failed on {source}: '
                      f'{(errors or result.stderr.splitlines() or ["no output"])[0]}')


def _cpu() -> str:
    """What identifies this CPU for -march=native: its model and feature flags."""
    try:
        with open('/proc/cpuinfo') as info:
            lines = [line for line in info if line.startswith(('model name', 'flags'))][:2]
    except OSError:
        lines = []
    return platform.machine() + ''.join(lines)
