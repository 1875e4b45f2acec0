"""Surface normals (unit vectors; ignored pixels hold 255 in every channel)."""
from ..registry import TASKS
from .base import Task


@TASKS.register_module(name='normals')
class Normals(Task):
    name = 'normals'
    num_outputs = 3
    label_kind = 'normals'
    metrics = {'mean': False, 'median': False, 'rmse': False, '11.25': True, '22.5': True, '30': True}
    primary_metric = 'mean'
