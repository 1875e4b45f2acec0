import pickle

import pytest
import torch
from mmengine.evaluator import Evaluator

from adapterkit.evaluation import MultiTaskMetric, delta_m
from adapterkit.registry import METRICS
from adapterkit.tasks import Normals

REFERENCES = {'semseg': 67.21, 'human_parts': 61.93, 'sal': 62.35, 'normals': 17.97}
DIRECTIONS = {'semseg': True, 'human_parts': True, 'sal': True, 'normals': False}


def test_delta_m_by_hand():
    value = delta_m({'a': 110.0, 'b': 9.0}, {'a': 100.0, 'b': 10.0}, {'a': True, 'b': False})
    assert value == pytest.approx((10 + 10) / 2)


@pytest.mark.parametrize('row, published', [
    ((68.19, 58.99, 64.48, 17.03), 1.35),  # MTLoRA r=16
    ((67.74, 59.46, 64.90, 16.59), 2.16),  # MTLoRA r=32
    ((67.90, 59.84, 65.40, 16.60), 2.55),  # MTLoRA r=64
])
def test_delta_m_reproduces_published_mtlora_rows(row, published):
    values = dict(zip(['semseg', 'human_parts', 'sal', 'normals'], row))
    # Every published number is rounded to 0.005: delta_m = 100 / T sum +-(v - r) / r moves
    # by 100 / T sum (dv / r + v dr / r^2) from its inputs' rounding, plus its own 0.005.
    rounding = 0.005 + 100 / len(values) * sum(
        0.005 / REFERENCES[t] + v * 0.005 / REFERENCES[t] ** 2 for t, v in values.items())
    assert delta_m(values, REFERENCES, DIRECTIONS) == pytest.approx(published, abs=rounding)


def test_delta_m_missing_reference_names_task():
    with pytest.raises(ValueError, match='depth'):
        delta_m({'depth': 0.5}, REFERENCES, {'depth': False})


def sample(semseg_pred, semseg_gt, sal_prob, sal_gt, normals_pred, normals_gt):
    return {'pred': {'semseg': semseg_pred, 'sal': sal_prob, 'normals': normals_pred},
            'gt': {'semseg': semseg_gt, 'sal': sal_gt, 'normals': normals_gt},
            'img_path': 'unused.jpg'}


def two_samples():
    unit_x = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1).expand(3, 2, 2)
    unit_y = torch.tensor([0.0, 1.0, 0.0]).reshape(3, 1, 1).expand(3, 2, 2)
    sal_gt = torch.tensor([[0, 1], [1, 255]])
    first = sample(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 0], [1, 1]]),
                   sal_gt.float().clamp(max=1), sal_gt, unit_x, unit_x)  # normals: 0 degrees
    second = sample(torch.tensor([[3, 3], [3, 3]]), torch.full((2, 2), 255),
                    sal_gt.float().clamp(max=1), sal_gt, unit_x, unit_y)  # normals: 90 degrees
    return [first, second]


def test_end_to_end_through_mmengine_evaluator():
    metric = MultiTaskMetric(
        tasks={'semseg': dict(type='semseg'), 'sal': dict(loss_weight=0.5), 'normals': Normals()},
        references={'semseg': 50.0, 'sal': 80.0, 'normals': 50.0})
    evaluator = Evaluator(metrics=metric)
    evaluator.process(data_samples=two_samples(), data_batch=None)
    assert len(pickle.dumps(metric.results)) < 40_000
    result = evaluator.evaluate(2)
    assert set(result) == {'semseg/mIoU', 'sal/mIoU', 'sal/maxF', 'normals/mean', 'normals/median',
                           'normals/rmse', 'normals/11.25', 'normals/22.5', 'normals/30', 'delta_m'}
    # semseg: second image fully ignored; IoU 1/2 and 2/3.
    assert result['semseg/mIoU'] == pytest.approx((0.5 + 2 / 3) / 2 * 100)
    assert result['sal/mIoU'] == pytest.approx(100.0)
    assert result['sal/maxF'] == pytest.approx(100.0)
    assert result['normals/mean'] == pytest.approx(45.0)
    assert result['normals/30'] == pytest.approx(50.0)
    expected = ((result['semseg/mIoU'] - 50) / 50 + (100 - 80) / 80 - (45 - 50) / 50) / 3 * 100
    assert result['delta_m'] == pytest.approx(expected)
    assert result['delta_m'] == pytest.approx((100 / 6 + 25 + 10) / 3)


def test_built_from_registry_with_task_names():
    metric = METRICS.build(dict(type='MultiTaskMetric', tasks=['semseg', 'sal']))
    assert isinstance(metric, MultiTaskMetric) and metric.prefix == ''
    assert list(metric.tasks) == ['semseg', 'sal'] and metric.tasks['sal'].name == 'sal'
    samples = [{'pred': {k: v for k, v in s['pred'].items() if k != 'normals'}, 'gt': s['gt']}
               for s in two_samples()]
    metric.process(None, samples)
    result = metric.compute_metrics(metric.results)
    assert 'delta_m' not in result and set(result) == {'semseg/mIoU', 'sal/mIoU', 'sal/maxF'}


def test_missing_task_in_sample_names_it():
    metric = MultiTaskMetric(tasks=['semseg', 'human_parts'])
    with pytest.raises(KeyError, match='human_parts'):
        metric.process(None, two_samples())


def test_missing_reference_names_task_at_init():
    with pytest.raises(ValueError, match='normals'):
        MultiTaskMetric(tasks=['semseg', 'normals'], references={'semseg': 67.21})


def test_task_key_must_match_task_name():
    with pytest.raises(ValueError, match='seg'):
        MultiTaskMetric(tasks={'seg': dict(type='semseg')})
