from . import backbones, heads  # noqa: F401  (register the modules)
from .data_preprocessor import MultiTaskDataPreprocessor
from .multitask import MultiTaskModel
from .parameters import count_parameters

__all__ = ['MultiTaskModel', 'MultiTaskDataPreprocessor', 'count_parameters']
