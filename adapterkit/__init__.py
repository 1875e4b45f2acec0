"""adapterkit: parameter-efficient multi-task dense prediction on mmengine."""
from . import compat

compat.install()  # before anything imports mmseg or loads a checkpoint

from .config import build_model, load_config  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .models.parameters import count_parameters  # noqa: E402

__version__ = '0.1.0'

__all__ = ['load_config', 'build_model', 'count_parameters', 'hookimpl', '__version__']
