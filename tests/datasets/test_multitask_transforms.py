"""Multi-task transforms: every target moves with the image and keeps its encoding."""
import numpy as np
import pytest
import torch

from adapterkit.datasets import (MultiTaskRandomFlip, MultiTaskRandomScaleRotate,
                                 MultiTaskResize, PackMultiTaskInputs)

H, W = 20, 24


def _sample(with_depth=False):
    rng = np.random.default_rng(0)
    semseg = np.zeros((H, W), np.uint8)
    semseg[4:12, 5:15] = 7
    semseg[14:, :6] = 255
    parts = np.zeros((H, W), np.uint8)
    parts[2:8, 10:20] = 3
    normals = rng.normal(size=(H, W, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    normals[:6, :8] = 255
    gt = {'semseg': semseg, 'human_parts': parts, 'sal': (semseg == 7).astype(np.uint8),
          'normals': normals}
    if with_depth:
        gt['depth'] = rng.uniform(0.5, 5, (H, W)).astype(np.float32)
    return {'img': rng.integers(0, 256, (H, W, 3), dtype=np.uint8), 'gt': gt,
            'img_id': 'x', 'ori_shape': (H, W), 'img_shape': (H, W)}


# float32 rounding (tests/tolerance.py): normalising a 3-vector (3 squares summed, a square
# root, a division) leaves its length within 3.5u of 1, and measuring it costs 2.5u more
U = np.finfo(np.float32).eps / 2


def _check_normals(normals):
    """Each pixel is either ignored (255 in every channel) or a unit vector."""
    ignored = normals[..., 0] == 255
    assert (normals[ignored] == 255).all()
    np.testing.assert_allclose(np.linalg.norm(normals[~ignored], axis=1), 1, rtol=0,
                               atol=6 * U)
    return ignored


def test_flip_mirrors_everything_and_negates_normals_x():
    sample = _sample()
    before = {k: v.copy() for k, v in sample['gt'].items()}
    img = sample['img'].copy()
    out = MultiTaskRandomFlip(prob=1.0)(sample)
    np.testing.assert_array_equal(out['img'], img[:, ::-1])
    for task in ('semseg', 'human_parts', 'sal'):
        np.testing.assert_array_equal(out['gt'][task], before[task][:, ::-1])
    mirrored = before['normals'][:, ::-1]
    valid = mirrored[..., 0] != 255
    np.testing.assert_array_equal(out['gt']['normals'][valid, 0], -mirrored[valid, 0])
    np.testing.assert_array_equal(out['gt']['normals'][valid, 1:], mirrored[valid, 1:])
    assert (out['gt']['normals'][~valid] == 255).all()

    untouched = MultiTaskRandomFlip(prob=0.0)(_sample())
    np.testing.assert_array_equal(untouched['gt']['normals'], _sample()['gt']['normals'])


def test_resize_nearest_labels_unit_normals_and_shapes():
    sample = _sample(with_depth=True)
    before = {k: v.copy() for k, v in sample['gt'].items()}
    out = MultiTaskResize(size=(37, 29))(sample)
    assert out['img'].shape == (37, 29, 3) and out['img'].dtype == np.uint8
    assert out['img_shape'] == (37, 29) and out['ori_shape'] == (H, W)
    for task in ('semseg', 'human_parts', 'sal'):
        assert out['gt'][task].shape == (37, 29)
        assert set(np.unique(out['gt'][task])) <= set(np.unique(before[task]))
    assert set(np.unique(out['gt']['depth'])) <= set(np.unique(before['depth']))
    assert out['gt']['normals'].shape == (37, 29, 3)
    ignored = _check_normals(out['gt']['normals'])
    assert ignored.any() and not ignored.all()


def test_resampled_normals_do_not_take_ignored_values():
    normals = np.zeros((H, W, 3), np.float32)
    normals[..., 2] = 1
    normals[:, : W // 2] = 255
    sample = dict(_sample(), gt={'normals': normals})
    np.random.seed(0)
    for transform in (MultiTaskResize(size=(31, 17)), MultiTaskRandomScaleRotate()):
        out = transform(dict(sample, gt={'normals': normals.copy()}))['gt']['normals']
        valid = ~_check_normals(out)
        assert valid.any()
        # x and y resample zeros: exactly 0; z / |z| rounds twice (the root, the division)
        np.testing.assert_allclose(out[valid], np.broadcast_to([0, 0, 1], out[valid].shape),
                                   rtol=0, atol=2 * U)


def test_scale_rotate_keeps_label_values_and_sizes():
    np.random.seed(1)
    for _ in range(3):
        sample = _sample(with_depth=True)
        before = {k: v.copy() for k, v in sample['gt'].items()}
        out = MultiTaskRandomScaleRotate(rotation=(-20, 20), scale=(0.75, 1.25))(sample)
        assert out['img'].shape == (H, W, 3) and out['img'].dtype == np.uint8
        for task in ('semseg', 'human_parts', 'sal', 'depth'):
            assert out['gt'][task].shape == (H, W)
            assert set(np.unique(out['gt'][task])) <= set(np.unique(before[task])) | {0}
        _check_normals(out['gt']['normals'])


def test_scale_rotate_keeps_a_fully_ignored_mask_ignored():
    sample = _sample()
    sample['gt']['human_parts'][:] = 255
    assert sample['gt']['semseg'][-1, 0] == 255
    out = MultiTaskRandomScaleRotate(rotation=(30, 30), scale=(0.7, 0.7))(sample)
    assert (out['gt']['human_parts'] == 255).all()
    assert out['gt']['semseg'][-1, 0] == 0  # other masks get the 0 border


def test_pack_dtypes_and_shapes():
    sample = _sample(with_depth=True)
    img = sample['img'].copy()
    packed = PackMultiTaskInputs()(sample)
    assert packed['inputs'].dtype == torch.uint8 and packed['inputs'].shape == (3, H, W)
    assert torch.equal(packed['inputs'], torch.from_numpy(img).permute(2, 0, 1))
    meta = packed['data_samples']
    assert meta['img_id'] == 'x' and meta['ori_shape'] == (H, W) and meta['img_shape'] == (H, W)
    gt = meta['gt']
    for task in ('semseg', 'human_parts', 'sal'):
        assert gt[task].dtype == torch.int64 and gt[task].shape == (H, W)
    assert gt['semseg'].max() == 255
    assert gt['normals'].dtype == torch.float32 and gt['normals'].shape == (3, H, W)
    assert gt['depth'].dtype == torch.float32 and gt['depth'].shape == (1, H, W)


def test_unknown_task_in_sample_is_a_clear_error():
    sample = _sample()
    sample['gt']['colour'] = sample['gt'].pop('sal')
    with pytest.raises(KeyError, match="'colour'"):
        PackMultiTaskInputs()(sample)


def test_bad_arguments():
    with pytest.raises(ValueError, match='prob'):
        MultiTaskRandomFlip(prob=2)
    with pytest.raises(ValueError, match='scale'):
        MultiTaskRandomScaleRotate(scale=(1.2, 0.8))
    with pytest.raises(ValueError, match='size'):
        MultiTaskResize(size=(0, 4))
