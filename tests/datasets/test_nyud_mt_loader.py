"""NYUDMTDataset on small files that the test writes in the NYUD-MT layout (ATRC / InvPT)."""
import os

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from adapterkit.datasets import NYUDMTDataset
from adapterkit.datasets.files import DatasetError
from adapterkit.registry import DATASETS

H, W = 3, 4
SEGMENTATION = np.array([[0, 1, 40, 7], [2, 0, 13, 40], [1, 1, 1, 1]], np.uint8)
DEPTH = np.array([[0.0, 1.5, 2.25, 3.0], [0.5, 0.0, 7.0, 9.5], [1.0, np.nan, -1.0, 2.0]],
                 np.float32)
NORMALS_ENCODED = np.array([[255, 0, 191], [128, 128, 255], [0, 255, 64], [10, 20, 30]],
                           np.uint8)[None].repeat(H, 0)
EDGE = np.array([[0, 255, 255, 0], [200, 100, 0, 255], [0, 0, 128, 127]], np.uint8)


def _save(root, rel, array):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if rel.endswith('.npy'):
        np.save(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'gt_sets'))
    for split, ids in (('train', ['a', 'b']), ('val', ['c'])):
        with open(os.path.join(root, 'gt_sets', f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{i}\n' for i in ids))
        for i, img_id in enumerate(ids):
            _save(root, f'images/{img_id}.png', np.full((H, W, 3), 30 * i + 10, np.uint8))
            _save(root, f'segmentation/{img_id}.png', SEGMENTATION)
            _save(root, f'depth/{img_id}.npy', DEPTH)
            _save(root, f'normals/{img_id}.png', NORMALS_ENCODED)
            _save(root, f'edge/{img_id}.png', EDGE)
    return root


def test_every_target_is_decoded_value_by_value(root):
    sample = NYUDMTDataset(root).load_sample(1)
    assert sample['img_id'] == 'b' and (sample['img'] == 40).all()
    gt = sample['gt']
    assert set(gt) == {'semseg', 'depth', 'normals', 'edge'}
    # segmentation: 0 (unlabelled) -> 255, classes 1..40 -> 0..39
    np.testing.assert_array_equal(gt['semseg'], [[255, 0, 39, 6], [1, 255, 12, 39],
                                                 [0, 0, 0, 0]])
    assert gt['semseg'].dtype == np.uint8
    # depth in metres; 0, NaN and negative values -> 0 (ignored by the depth task)
    np.testing.assert_array_equal(gt['depth'], [[0.0, 1.5, 2.25, 3.0], [0.5, 0.0, 7.0, 9.5],
                                                [1.0, 0.0, 0.0, 2.0]])
    assert gt['depth'].dtype == np.float32
    # normals: 2 v / 255 - 1 per channel, every pixel valid
    expected = np.float32([[1, -1, 127 / 255], [1 / 255, 1 / 255, 1],
                           [-1, 1, -127 / 255], [-235 / 255, -215 / 255, -195 / 255]])
    np.testing.assert_allclose(gt['normals'], np.broadcast_to(expected, (H, W, 3)), atol=1e-7)
    # edge: v / 255, binary: v > 127
    np.testing.assert_array_equal(gt['edge'], [[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 0]])
    assert NYUDMTDataset(root, split='val').load_sample(0)['img_id'] == 'c'


def test_flip_mirrors_the_targets_and_negates_normals_x(root):
    with DefaultScope.overwrite_default_scope('adapterkit'):
        ds = DATASETS.build(dict(type='NYUDMTDataset', data_root=root, tasks=['depth', 'normals'],
                                 pipeline=[dict(type='MultiTaskRandomFlip', prob=1.0)]))
    plain = ds.load_sample(0)['gt']
    flipped = ds[0]['gt']
    np.testing.assert_array_equal(flipped['depth'], plain['depth'][:, ::-1])
    np.testing.assert_array_equal(flipped['normals'][..., 0], -plain['normals'][:, ::-1, 0])
    np.testing.assert_array_equal(flipped['normals'][..., 1:], plain['normals'][:, ::-1, 1:])


def test_only_the_files_of_the_selected_tasks_are_needed(root):
    for folder in ('segmentation', 'normals', 'edge'):
        for name in os.listdir(os.path.join(root, folder)):
            os.remove(os.path.join(root, folder, name))
    sample = NYUDMTDataset(root, tasks=['depth']).load_sample(0)
    assert set(sample['gt']) == {'depth'}
    with pytest.raises(FileNotFoundError, match=r'NYUD-MT: 2 file\(s\).*segmentation.a\.png'):
        NYUDMTDataset(root, tasks=['semseg', 'depth'])


def test_bad_data_is_one_line_naming_the_file(root, tmp_path):
    with pytest.raises(FileNotFoundError, match='^NYUD-MT: data root not found: '):
        NYUDMTDataset(str(tmp_path / 'nowhere'))
    with pytest.raises(ValueError, match="'sal' is not provided by NYUD-MT.*'depth'"):
        NYUDMTDataset(root, tasks=['semseg', 'sal'])
    path = _save(root, 'segmentation/a.png', np.full((H, W), 41, np.uint8))
    with pytest.raises(DatasetError, match=f'^{path}: label 41 is above the 40 NYUD classes'):
        NYUDMTDataset(root, tasks=['semseg']).load_sample(0)
    depth = os.path.join(root, 'depth/b.npy')
    data = open(depth, 'rb').read()
    open(depth, 'wb').write(data[:-8])
    with pytest.raises(DatasetError, match=f"^NYUD-MT split 'train': {depth}: truncated .npy"):
        NYUDMTDataset(root, tasks=['depth'])
