"""TADFormer for adapterkit, as a third-party plugin (entry point ``tadformer``)."""
from .convert import convert_state_dict, is_reference_state_dict
from .layers import DynamicFilter, StaticFilters, TADLinear
from .tadformer import TADBlock, TADFormer

__version__ = '0.1.0'

__all__ = ['TADFormer', 'TADBlock', 'TADLinear', 'StaticFilters', 'DynamicFilter',
           'convert_state_dict', 'is_reference_state_dict', '__version__']
