import torch
from mmengine.dataset import pseudo_collate

import adapterkit  # noqa: F401
from adapterkit.models import MultiTaskDataPreprocessor


def test_batches_normalises_and_keeps_per_image_fields():
    samples = [dict(inputs=torch.full((3, 2, 2), v, dtype=torch.uint8),
                    data_samples=dict(gt=dict(semseg=torch.full((2, 2), v, dtype=torch.uint8),
                                              normals=torch.zeros(3, 2, 2)),
                                      img_id=f'id{v}', img_shape=(2, 3 + v)))
               for v in (0, 10)]
    pre = MultiTaskDataPreprocessor(mean=(10, 10, 10), std=(2, 2, 2))
    out = pre(pseudo_collate(samples))
    assert out['inputs'].shape == (2, 3, 2, 2) and out['inputs'].dtype == torch.float32
    assert torch.equal(out['inputs'][:, 0, 0, 0], torch.tensor([-5., 0.]))
    gt = out['data_samples']['gt']
    # uint8 label maps (what PackMultiTaskInputs gives) become int64 after the copy
    assert gt['semseg'].shape == (2, 2, 2) and gt['semseg'].dtype == torch.int64
    assert gt['semseg'][1].eq(10).all()
    assert gt['normals'].shape == (2, 3, 2, 2)
    assert out['data_samples']['img_id'] == ['id0', 'id10']
    assert out['data_samples']['img_shape'] == [(2, 3), (2, 13)]
