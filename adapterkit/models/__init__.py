# compat.py's shims first: the modules below import mmengine's Runner and optimizers
from .. import registry  # noqa: F401
from . import backbones, heads  # noqa: F401  (register the modules)
from .data_preprocessor import MultiTaskDataPreprocessor
from .multitask import MultiTaskModel
from .parameters import count_parameters

__all__ = ['MultiTaskModel', 'MultiTaskDataPreprocessor', 'count_parameters']
