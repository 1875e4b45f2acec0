from .base import AdapterStrategy
from .decoder_only import DecoderOnly
from .full import Full

__all__ = ['AdapterStrategy', 'Full', 'DecoderOnly']
