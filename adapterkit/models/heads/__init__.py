from .hrnet_head import HRNetHead
from .mmseg_head import MMSegHead

__all__ = ['HRNetHead', 'MMSegHead']
