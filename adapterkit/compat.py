"""The one place for third-party quirks.

1. mmcv-lite ships no compiled ops, yet mmseg 1.2.2 imports ``mmcv.ops`` at module
   level. ``install_mmcv_ops_shim`` puts a pure-PyTorch ``mmcv.ops`` in front of the
   real one: ``point_sample`` works, every other op raises ``ModuleNotFoundError``
   (which mmseg's guarded imports expect).
2. mmengine 0.10.7 loads checkpoints with a bare ``torch.load``; on torch >= 2.6 that
   means ``weights_only=True`` and mmengine's own checkpoints (message hub, numpy
   scalars) are refused. ``install_safe_checkpoint_loading`` allow-lists exactly the
   types mmengine stores and turns a refused pickle into one clear error. Unrestricted
   unpickling is never used. The MTLoRA reference code pickles its yacs config next to
   its weights: ``yacs.config.CfgNode`` is read as the plain dict it is (nothing of yacs
   runs), so its checkpoints load and say what they are.
3. mmengine's optimizer builder imports transformers at module level, to register its
   Adafactor: with peft installed that is 2-3 s of every command's start.
   ``install_lazy_adafactor`` imports the builder without it and registers an ``Adafactor``
   that imports transformers when an optimizer of that type is built.
4. Checkpoint files are read by their content (``layouts.file_format``), not their
   suffix: a safetensors file reads as ``{'state_dict': tensors, 'meta': metadata}``, also
   through mmengine's ``load_from``.
"""
import collections
import importlib.util
import os
import pickle
import sys
import types
import zipfile

import torch
import torch.nn.functional as F

from .errors import CheckpointError, CheckpointRefusedError, MissingFileError
from .layouts import ACCEPTED, file_format


# ---------------------------------------------------------------- mmcv.ops shim
def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` (N, C, H, W) at ``points`` in [0, 1]^2, shaped (N, P, 2) or
    (N, Hg, Wg, 2); returns (N, C, P) or (N, C, Hg, Wg)."""
    flat = points.dim() == 3
    grid = points.unsqueeze(2) if flat else points
    out = F.grid_sample(input, 2.0 * grid - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


def _missing_op(name: str):
    def op(*args, **kwargs):
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs compiled mmcv ops; adapterkit runs on mmcv-lite, '
            'which has none (use the pure-PyTorch code path of the caller)')
    op.__name__ = name
    return op


# Imported unguarded at module level by mmseg; only called on its CUDA path.
_CALL_TIME_MISSING = ('sigmoid_focal_loss',)


def install_mmcv_ops_shim() -> None:
    """Make ``import mmseg`` work on mmcv-lite. Idempotent; a no-op with full mmcv."""
    current = sys.modules.get('mmcv.ops')
    if current is not None and getattr(current, '__adapterkit_shim__', False):
        return
    if importlib.util.find_spec('mmcv._ext') is not None:
        return  # real compiled ops are available
    shim = types.ModuleType('mmcv.ops')
    shim.__adapterkit_shim__ = True
    shim.point_sample = point_sample
    for name in _CALL_TIME_MISSING:
        setattr(shim, name, _missing_op(name))

    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} is not available: mmcv-lite has no compiled ops')

    shim.__getattr__ = __getattr__
    import mmcv
    sys.modules['mmcv.ops'] = shim
    mmcv.ops = shim


# ------------------------------------------------- transformers' Adafactor, on demand
def _adafactor(params, **kwargs):
    """transformers' Adafactor, imported when one is built. mmengine passes the parameters
    under the name of the first argument, which it reads off the signature."""
    from transformers import Adafactor
    return Adafactor(params, **kwargs)


def install_lazy_adafactor() -> None:
    """Import mmengine's optimizer builder with ``import transformers`` failing (its own
    guard skips Adafactor), then register the lazy ``Adafactor``. A no-op where the builder
    or transformers is already imported, or transformers is not installed."""
    builder = 'mmengine.optim.optimizer.builder'
    if builder in sys.modules or 'transformers' in sys.modules \
            or importlib.util.find_spec('transformers') is None:
        return
    sys.modules['transformers'] = None  # makes `import transformers` raise ImportError
    try:
        importlib.import_module(builder)
    finally:
        del sys.modules['transformers']
    from mmengine.registry import OPTIMIZERS
    OPTIMIZERS.register_module(name='Adafactor', module=_adafactor)


# ------------------------------------------------------- safe checkpoint loading
def _history_buffer_getattr(obj, name: str):
    """The only ``getattr`` a checkpoint may call: mmengine's HistoryBuffer pickles its
    statistics methods as ``getattr(HistoryBuffer, 'mean')`` and the like."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise CheckpointRefusedError(f'checkpoint asks for getattr({obj!r}, {name!r})')


def _mmengine_safe_globals() -> list:
    """Every non-tensor global an mmengine Runner checkpoint refers to."""
    import collections

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe = [HistoryBuffer, collections.OrderedDict, np.ndarray, np.dtype,
            multiarray._reconstruct, multiarray.scalar,
            (_history_buffer_getattr, 'builtins.getattr'),
            (collections.OrderedDict, 'yacs.config.CfgNode')]
    # numpy >= 1.25 may pickle a dtype through its class (numpy.dtypes.Float64DType, ...).
    safe += [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64', 'int32',
                                         'int16', 'int8', 'uint8', 'bool')]
    return safe


def load_checkpoint_file(filename, map_location=None, mmap: bool = False) -> dict:
    """A checkpoint file by its content: a safetensors file as ``{'state_dict': tensors,
    'meta': its metadata}``, a torch file through ``torch.load`` restricted to tensors,
    containers and mmengine's stored types. A pickle that refers to anything else is
    refused before any of it runs; a file of neither format is one line saying so.
    ``mmap`` maps a torch file's tensors instead of reading them (cheap when only metadata
    is needed)."""
    _refuse_incomplete(filename)
    kind = file_format(str(filename))
    if kind == 'safetensors':
        return read_safetensors(str(filename))
    if kind != 'torch':
        raise CheckpointError(f'{filename}: neither a torch nor a safetensors file (by its '
                              f'content); adapterkit reads {ACCEPTED}', file=str(filename))
    try:
        with torch.serialization.safe_globals(_mmengine_safe_globals()):
            if mmap:  # mapping needs the path
                return torch.load(filename, map_location=map_location, weights_only=True,
                                  mmap=True)
            # a file object: torch >= 2.10 reads a path named *.safetensors by its suffix
            with open(filename, 'rb') as f:
                return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if 'Unsupported' in line or 'unrecognized' in line
                       or 'Trying to' in line), lines[0] if lines else 'unsafe pickle')
        raise CheckpointRefusedError(
            f'{filename}: refused to load checkpoint: it refers to objects outside the '
            f'allow-list ({reason}); nothing from it was executed', file=str(filename)) from None


def read_safetensors(path: str) -> dict:
    """``{'state_dict': tensors, 'meta': metadata}`` of a safetensors file. The tensors come
    as an OrderedDict whose torch ``_metadata`` hands the file's path and metadata to the
    model's load hooks (the root module's entry, ``''``), through mmengine's loading too."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            meta = dict(f.metadata() or {})
            state = collections.OrderedDict((key, f.get_tensor(key)) for key in f.keys())
    except Exception as err:  # safetensors reports a malformed file with its own error type
        raise CheckpointError(f'{path}: not a readable safetensors file ({err})',
                              file=path) from None
    state._metadata = {'': dict(adapterkit_file=dict(meta, path=path))}
    return dict(state_dict=state, meta=meta)


def _refuse_incomplete(filename) -> None:
    """One line for a file that cannot hold a whole checkpoint: an empty one, or torch's
    zip format without its end record (cut off by a kill or a failed copy)."""
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not head:
        reason = 'the file is empty'
    elif head == b'PK\x03\x04' and not zipfile.is_zipfile(filename):
        reason = f'its zip archive ends early ({os.path.getsize(filename):,} bytes)'
    else:
        return
    raise CheckpointError(f'{filename}: not a checkpoint (truncated?): {reason}',
                          file=str(filename))


def install_safe_checkpoint_loading() -> None:
    """Route mmengine's local/file checkpoint loading through ``load_checkpoint_file``."""
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location=None, logger=None):
        import os.path as osp
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise MissingFileError(f'checkpoint not found: {filename}', file=filename)
        return load_checkpoint_file(filename, map_location=map_location)


def install() -> None:
    install_lazy_adafactor()  # before anything imports mmengine.runner or mmengine.optim
    install_mmcv_ops_shim()
    install_safe_checkpoint_loading()
