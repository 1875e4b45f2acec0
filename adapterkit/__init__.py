"""adapterkit: parameter-efficient multi-task dense prediction on mmengine."""
from . import compat

compat.install()

__version__ = '0.1.0'
