"""On CPU, keep freed memory in the process instead of returning it to the kernel (glibc).

glibc's malloc serves every block above 32 MB (the highest its mmap threshold goes) with a
fresh ``mmap`` and unmaps it when freed, and returns the top of its heap to the kernel past a
trim threshold. A training step on CPU allocates and frees gigabytes in such blocks, so every
step faults in new zeroed pages: for MTLoRA on Swin-T at 448 px that kernel time is 15-30% of
a step. Mode 'retain' of ``configure_cpu_malloc`` has glibc serve all blocks from its heap
and keep what is freed (``mallopt``, the in-process form of ``MALLOC_MMAP_MAX_=0`` and a
large ``MALLOC_TRIM_THRESHOLD_``; jemalloc or tcmalloc preloads do the same job), so later
steps reuse the pages of the first. The price: the process holds its peak memory until it
exits, and the heap fragments (docs/performance.md measures both ways).

adapterkit applies it in its CPU runs (``train``, ``test``, ``bench``, ``compare``, ``demo``
without a GPU). ``ADAPTERKIT_CPU_MALLOC=system`` keeps glibc's defaults.
"""
import ctypes
import os
from typing import Optional

from ..errors import ConfigError

ENV = 'ADAPTERKIT_CPU_MALLOC'
MODES = ('retain', 'system')
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_applied = None


def configure_cpu_malloc(mode: Optional[str] = None) -> str:
    """Set glibc's allocator to ``mode`` ('retain' or 'system'; default: the environment
    variable ``ADAPTERKIT_CPU_MALLOC``, else 'retain'), once per process. Returns the mode in
    effect: 'system' also where the C library is not glibc (then nothing changes)."""
    global _applied
    if _applied is not None:
        return _applied
    mode = mode or os.environ.get(ENV) or 'retain'
    if mode not in MODES:
        raise ConfigError(f'{ENV} must be one of {MODES}, got {mode!r}', option=ENV)
    if mode == 'retain':
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):  # not glibc: no mallopt
            mode = 'system'
        else:
            # mallopt returns 1 on success; a trim threshold of -1 turns trimming off
            ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
            mode = 'retain' if ok else 'system'
    _applied = mode
    return mode
