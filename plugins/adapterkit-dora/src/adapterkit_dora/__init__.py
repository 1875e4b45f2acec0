"""DoRA for adapterkit, as a third-party plugin (entry point ``dora``)."""
from .dora import DoRA, DoRALinear

__version__ = '0.1.0'

__all__ = ['DoRA', 'DoRALinear', '__version__']
