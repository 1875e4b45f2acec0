from .base import Task
from .depth import Depth
from .edge import Edge
from .human_parts import HumanParts
from .normals import Normals
from .sal import Saliency
from .semseg import SemSeg

__all__ = ['Task', 'SemSeg', 'HumanParts', 'Saliency', 'Normals', 'Edge', 'Depth']
