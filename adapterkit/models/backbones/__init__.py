from .swin import SwinBackbone

__all__ = ['SwinBackbone']
