"""Multi-task evaluation: every task's metrics plus Δm against single-task references."""
from typing import Dict, Mapping, Optional, Sequence

from mmengine.evaluator import BaseMetric

from ..errors import ConfigError, UnknownNameError
from ..registry import METRICS
from ..tasks.base import build_tasks


def delta_m(values: Mapping[str, float], references: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float:
    """Average relative gain in % over the tasks of ``values`` (Maninis et al. 2019).

    Δm = (1/T) Σ_t (-1)^{l_t} (M_t - M_ref_t) / M_ref_t * 100, with l_t = 1 when lower is
    better for task t; T = number of tasks in ``values``.
    """
    total = 0.0
    for task, value in values.items():
        if task not in references:
            raise ConfigError(f'delta_m: no reference value for task {task!r}', task=task)
        if task not in higher_is_better:
            raise ConfigError(f'delta_m: direction (higher_is_better) unknown for task {task!r}',
                              task=task)
        reference = references[task]
        sign = 1.0 if higher_is_better[task] else -1.0
        total += sign * (value - reference) / reference * 100
    return total / len(values)


@METRICS.register_module()
class MultiTaskMetric(BaseMetric):
    """Evaluates every task of a multi-task model in one pass.

    Args:
        tasks: task names, or {name: task config dict (``dict(type='semseg')``) or Task}.
        references: optional {task: single-task reference value of its primary metric};
            when given, every task needs one and 'delta_m' is reported.

    ``process`` takes the model's predict output: one dict per image with
    ``{'pred': {task: prediction}, 'gt': {task: target}}`` (no batch dimension).
    Result keys: ``'<task>/<metric>'`` for every metric of every task, and 'delta_m'.
    """

    default_prefix = ''

    def __init__(self, tasks, references: Optional[Mapping[str, float]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.tasks = build_tasks(tasks)
        self.references = None
        if references is not None:
            missing = [name for name in self.tasks if name not in references]
            if missing:
                raise ConfigError(f'MultiTaskMetric: no reference value for task(s) {missing}',
                                  key='references')
            self.references = {name: float(references[name]) for name in self.tasks}

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            stats = {}
            for name, task in self.tasks.items():
                for part in ('pred', 'gt'):
                    if name not in sample[part]:
                        raise UnknownNameError(
                            f"task {name!r} missing from the sample's {part!r}", task=name)
                stats[name] = task.process(sample['pred'][name], sample['gt'][name])
            self.results.append(stats)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = {}
        primary = {}
        for name, task in self.tasks.items():
            task_metrics = task.compute([stats[name] for stats in results])
            for metric, value in task_metrics.items():
                metrics[f'{name}/{metric}'] = value
            primary[name] = task_metrics[task.primary_metric]
        if self.references is not None:
            directions = {name: task.metrics[task.primary_metric]
                          for name, task in self.tasks.items()}
            metrics['delta_m'] = delta_m(primary, self.references, directions)
        return metrics
