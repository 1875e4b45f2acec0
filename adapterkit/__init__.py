"""adapterkit: parameter-efficient multi-task dense prediction on mmengine.

Importing the package is light (no torch, mmengine or timm), so that ``adapterkit --help``
and plugin entry points start at once: the public names below are imported on first use.
The third-party shims of ``compat.py`` are installed by ``registry.py``, which everything
that builds a model, a dataset or a Runner imports first.
"""
import importlib

__version__ = '0.1.0'

# public name -> the module that defines it
_PUBLIC = {'load_config': 'config', 'build_model': 'config',
           'count_parameters': 'models.parameters', 'hookimpl': 'hookspecs'}

__all__ = ['load_config', 'build_model', 'count_parameters', 'hookimpl', '__version__']


def __getattr__(name: str):
    """A public name, or a submodule (``adapterkit.plugins``), imported on first use."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f'.{_PUBLIC[name]}', __name__), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    if not name.startswith('__'):
        try:
            return importlib.import_module(f'.{name}', __name__)
        except ModuleNotFoundError as err:
            if err.name != f'{__name__}.{name}':
                raise  # the submodule exists and lacks a dependency
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(__all__))
