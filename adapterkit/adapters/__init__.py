from .base import TRAINABLE_ALIASES, AdapterStrategy, NotMergeableError
from .bitfit import BitFit
from .bottleneck import (Adapter, BottleneckAdapter, Compacter, CompacterPlusPlus,
                         LowRankAdapter, PHMAdapter)
from .decoder_only import DecoderOnly
from .full import Full
from .hyperformer import HyperFormer
from .lora import SWIN_BLOCK_LINEARS, LoRA, LoRAConv2d, LoRALinear
from .mtlora import MTLoRA, MTLoRABlock, MTLoRALinear
from .pertask import PerTask
from .polyhistor import Polyhistor, PolyhistorLite
from .vpt import VPT

__all__ = ['AdapterStrategy', 'NotMergeableError', 'TRAINABLE_ALIASES', 'Full', 'DecoderOnly',
           'LoRA', 'LoRALinear', 'LoRAConv2d', 'SWIN_BLOCK_LINEARS', 'Adapter',
           'BottleneckAdapter', 'PHMAdapter', 'Compacter', 'CompacterPlusPlus',
           'LowRankAdapter', 'BitFit', 'MTLoRA', 'MTLoRALinear', 'MTLoRABlock', 'PerTask',
           'VPT', 'HyperFormer', 'Polyhistor', 'PolyhistorLite']
