"""PascalMTDataset on small files that the test writes in the real PASCAL-MT layout."""
import json
import os

import cv2
import numpy as np
import pytest
import scipy.io
from mmengine.registry import DefaultScope
from PIL import Image

from adapterkit.datasets import PascalMTDataset
from adapterkit.datasets.files import DatasetError
from adapterkit.datasets.pascal_mt import edges_from_label_map, thin
from adapterkit.registry import DATASETS

H, W = 6, 8


def _save_png(root, rel, array):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def _save_mat(root, rel, variables):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, variables)


def _structs(records, fields):
    array = np.zeros((1, len(records)), dtype=[(f, 'O') for f in fields])
    for i, record in enumerate(records):
        array[0, i] = record
    return array


def _box(y0, y1, x0, x1):
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _parts_mat(objects):
    """PASCAL-Part 'anno' with objects given as (class, class_ind, mask, [(part, mask)])."""
    records = []
    for name, class_ind, mask, parts in objects:
        parts = _structs(parts, ('part_name', 'mask')) if parts else np.zeros((0, 0))
        records.append((name, np.uint8(class_ind), mask, parts))
    return {'anno': {'imname': 'x.jpg',
                     'objects': _structs(records, ('class', 'class_ind', 'mask', 'parts'))}}


def _write_split(root, split, ids):
    os.makedirs(os.path.join(root, 'ImageSets/Context'), exist_ok=True)
    with open(os.path.join(root, 'ImageSets/Context', f'{split}.txt'), 'w') as f:
        f.write(''.join(f'{i}\n' for i in ids))


def _write_images(root, ids):
    for i, img_id in enumerate(ids):
        img = np.full((H, W, 3), 40 * i + 20, np.uint8)
        path = os.path.join(root, 'JPEGImages', f'{img_id}.jpg')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(img).save(path)


@pytest.fixture
def root(tmp_path):
    """Two images: 'a' with a person with parts, 'b' without a person."""
    root = str(tmp_path)
    ids = ['a', 'b']
    _write_split(root, 'train', ids)
    _write_images(root, ids)
    person_parts = [('head', _box(0, 1, 2, 4)), ('hair', _box(0, 1, 3, 4)),
                    ('torso', _box(1, 3, 2, 4)), ('luarm', _box(1, 2, 4, 5)),
                    ('llarm', _box(2, 3, 4, 5)), ('rhand', _box(2, 3, 1, 2)),
                    ('luleg', _box(3, 4, 2, 3)), ('rlleg', _box(4, 5, 3, 4)),
                    ('lfoot', _box(5, 6, 2, 3))]
    _save_mat(root, 'human_parts/a.mat', _parts_mat([
        ('cat', 8, _box(0, 2, 6, 8), []),
        ('person', 15, _box(0, 6, 1, 5), person_parts),
        ('person', 15, _box(0, 6, 5, 6), []),  # a person without parts annotation
    ]))
    _save_mat(root, 'human_parts/b.mat', _parts_mat([('dog', 12, _box(0, 3, 0, 3), [])]))
    for i, img_id in enumerate(ids):
        _save_png(root, f'semseg/VOC12/{img_id}.png', np.full((H, W), i + 1, np.uint8))
        _save_png(root, f'sal_distill/{img_id}.png',
                  np.tile(np.array([0, 127, 128, 255, 0, 200, 10, 255], np.uint8), (H, 1)))
        _save_png(root, f'normals_distill/{img_id}.png',
                  np.tile(np.array([255, 0, 191], np.uint8), (H, W, 1)))
        label_map = np.full((H, W), 440, np.uint16)  # wall
        label_map[:, :2] = 360  # sky: no NYU class
        _save_mat(root, f'pascal-context/trainval/{img_id}.mat', {'LabelMap': label_map})
    os.makedirs(os.path.join(root, 'json'))
    with open(os.path.join(root, 'json/nyu_classes.json'), 'w') as f:
        json.dump({'wall': 21, 'unknown': 20, 'floor': 11}, f)
    with open(os.path.join(root, 'json/context_classes.json'), 'w') as f:
        json.dump({'wall': 440, 'sky': 360, 'unknown': 431, 'tvmonitor': 427}, f)
    return root


def test_human_parts_exact_map_and_no_person_is_ignored(root):
    ds = PascalMTDataset(root, tasks=['human_parts'])
    parts = ds.load_sample(0)['gt']['human_parts']
    expected = np.array([
        [0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 2, 2, 3, 0, 0, 0],
        [0, 4, 2, 2, 4, 0, 0, 0],
        [0, 0, 5, 0, 0, 0, 0, 0],
        [0, 0, 0, 6, 0, 0, 0, 0],
        [0, 0, 6, 0, 0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(parts, expected)
    no_person = ds.load_sample(1)['gt']['human_parts']
    assert no_person.shape == (H, W) and (no_person == 255).all()


def test_unknown_part_name_names_file_and_part(root):
    _save_mat(root, 'human_parts/a.mat', _parts_mat([
        ('person', 15, _box(0, 6, 1, 5), [('tail', _box(0, 1, 0, 1))])]))
    ds = PascalMTDataset(root, tasks=['human_parts'])
    with pytest.raises(ValueError, match=r"a\.mat.*'tail'"):
        ds.load_sample(0)


def test_normals_decoding_and_validity_from_json(root):
    normals = PascalMTDataset(root, tasks=['normals']).load_sample(0)['gt']['normals']
    assert normals.dtype == np.float32 and normals.shape == (H, W, 3)
    assert (normals[:, :2] == 255).all()  # sky is not an NYU class
    # decoded in float32: 2v / 255 rounds once (<= 2u, as it is < 2), the difference once (u)
    u = np.finfo(np.float32).eps / 2
    np.testing.assert_allclose(normals[:, 2:], np.broadcast_to([1, -1, 2 * 191 / 255 - 1],
                                                               (H, W - 2, 3)), rtol=0, atol=3 * u)


def test_normals_explicit_classes_and_missing_json(root):
    ds = PascalMTDataset(root, tasks=['normals'], normals_valid_classes=[360])
    normals = ds.load_sample(0)['gt']['normals']
    assert (normals[:, 2:] == 255).all() and (normals[:, :2] != 255).all()
    os.remove(os.path.join(root, 'json/nyu_classes.json'))
    with pytest.raises(FileNotFoundError, match='nyu_classes.json'):
        PascalMTDataset(root, tasks=['normals'])


def test_edges_from_label_map_with_a_square(root):
    label_map = np.zeros((10, 10), np.uint16)
    label_map[3:7, 3:7] = 5
    # What skimage.morphology.thin gives for thin(|Laplacian| > 0) of this map.
    expected = np.zeros((10, 10), np.uint8)
    expected[3, 3:6] = expected[7, 4:6] = 1
    expected[4:6, 2] = expected[6, 3] = expected[4:7, 6] = 1
    np.testing.assert_array_equal(edges_from_label_map(label_map), expected)

    small = np.zeros((H, W), np.uint16)
    small[1:4, 2:6] = 23
    _save_mat(root, 'pascal-context/trainval/a.mat', {'LabelMap': small})
    edge = PascalMTDataset(root, tasks=['edge']).load_sample(0)['gt']['edge']
    assert edge.dtype == np.uint8 and edge.any()
    np.testing.assert_array_equal(edge, edges_from_label_map(small))


def test_thin_keeps_the_middle_of_a_bar():
    bar = np.zeros((7, 12), bool)
    bar[2:5, 1:11] = True
    expected = np.zeros((7, 12), bool)
    expected[3, 2:10] = True
    np.testing.assert_array_equal(thin(bar), expected)


def test_semseg_prefers_voc12_and_falls_back_to_pascal_context(root):
    _save_png(root, 'semseg/pascal-context/a.png', np.full((H, W), 9, np.uint8))
    os.remove(os.path.join(root, 'semseg/VOC12/b.png'))
    _save_png(root, 'semseg/pascal-context/b.png', np.full((H, W), 7, np.uint8))
    ds = PascalMTDataset(root, tasks=['semseg'])
    assert (ds.load_sample(0)['gt']['semseg'] == 1).all()
    assert (ds.load_sample(1)['gt']['semseg'] == 7).all()


def test_saliency_threshold(root):
    sal = PascalMTDataset(root, tasks=['sal']).load_sample(0)['gt']['sal']
    np.testing.assert_array_equal(sal[0], [0, 0, 1, 1, 0, 1, 0, 1])


def test_only_selected_modalities_are_needed(tmp_path):
    root = str(tmp_path)
    _write_split(root, 'val', ['x'])
    _write_images(root, ['x'])
    _save_png(root, 'sal_distill/x.png', np.full((H, W), 255, np.uint8))
    sample = PascalMTDataset(root, split='val', tasks=['sal']).load_sample(0)
    assert set(sample['gt']) == {'sal'}
    assert sample['img'].shape == (H, W, 3) and sample['img'].dtype == np.uint8
    assert sample['img_id'] == 'x' and sample['ori_shape'] == sample['img_shape'] == (H, W)


def test_missing_file_error_names_the_file(root):
    os.remove(os.path.join(root, 'sal_distill/b.png'))
    with pytest.raises(FileNotFoundError, match=r'sal_distill.b\.png'):
        PascalMTDataset(root, tasks=['semseg', 'sal'])
    with pytest.raises(FileNotFoundError, match=r'ImageSets.Context.val\.txt'):
        PascalMTDataset(root, split='val', tasks=['semseg'])


def test_unknown_and_non_pascal_tasks_are_rejected(root):
    with pytest.raises(ValueError, match="'foo'.*semseg.*human_parts"):
        PascalMTDataset(root, tasks=['semseg', 'foo'])
    with pytest.raises(ValueError, match="'depth'.*PASCAL-MT"):
        PascalMTDataset(root, tasks=['depth'])


def test_built_from_config_with_pipeline(root):
    with DefaultScope.overwrite_default_scope('adapterkit'):
        ds = DATASETS.build(dict(
            type='PascalMTDataset', data_root=root, split='train',
            tasks=['semseg', 'human_parts', 'sal', 'normals', 'edge'],
            pipeline=[dict(type='MultiTaskRandomFlip', prob=1.0),
                      dict(type='MultiTaskResize', size=(12, 16)),
                      dict(type='PackMultiTaskInputs')]))
    assert len(ds) == 2 and ds.metainfo['semseg_classes'][15] == 'person'
    packed = ds[0]
    assert packed['inputs'].shape == (3, 12, 16)
    gt = packed['data_samples']['gt']
    assert set(gt) == {'semseg', 'human_parts', 'sal', 'normals', 'edge'}
    assert gt['normals'].shape == (3, 12, 16) and gt['semseg'].shape == (12, 16)
    assert packed['data_samples']['img_shape'] == (12, 16)
    assert packed['data_samples']['ori_shape'] == (H, W)


# ---------------------------------------------------------------- broken data

def test_a_truncated_image_stops_building_the_data_set_with_one_line_naming_it(root):
    path = os.path.join(root, 'JPEGImages/b.jpg')
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
    with pytest.raises(DatasetError) as err:
        PascalMTDataset(root, tasks=['semseg'])
    assert str(err.value) == (f"PASCAL-MT split 'train': {path}: truncated JPEG (no "
                              f"end-of-image marker in its last 1024 bytes)")
    # Without the check at construction, reading it is the same one line.
    ds = PascalMTDataset(root, tasks=['semseg'], check_files=False)
    ds.load_sample(0)
    with pytest.raises(DatasetError, match=f'^{path}: truncated JPEG'):
        ds.load_sample(1)


def test_an_undecodable_label_png_is_named_when_read(root):
    path = os.path.join(root, 'semseg/VOC12/a.png')
    data = bytearray(open(path, 'rb').read())
    data[37:45] = b'\xff' * 8  # inside the image data chunk; the file stays complete
    open(path, 'wb').write(bytes(data))
    ds = PascalMTDataset(root, tasks=['semseg'])
    with pytest.raises(DatasetError, match=f'^{path}: cannot be decoded'):
        ds.load_sample(0)


def test_a_missing_data_root_is_named_whatever_the_tasks(tmp_path):
    missing = str(tmp_path / 'nowhere')
    for tasks in (['semseg'], ['normals'], ['human_parts', 'edge']):
        with pytest.raises(FileNotFoundError, match=f'^PASCAL-MT: data root not found: '
                                                    f'{missing}$'):
            PascalMTDataset(missing, tasks=tasks)


def test_human_parts_are_parsed_once_then_read_from_the_cache(root):
    ds = PascalMTDataset(root, tasks=['human_parts'])
    first = ds.load_sample(0)['gt']['human_parts']
    entries = os.listdir(os.path.join(root, '.cache/human_parts'))
    assert len(entries) == 1 and entries[0].startswith('a.')
    entry = os.path.join(root, '.cache/human_parts', entries[0])
    np.testing.assert_array_equal(cv2.imread(entry, cv2.IMREAD_UNCHANGED), first)
    open(entry, 'wb').write(b'not a png')  # a damaged entry is derived and written again
    np.testing.assert_array_equal(ds.load_sample(0)['gt']['human_parts'], first)
    np.testing.assert_array_equal(cv2.imread(entry, cv2.IMREAD_UNCHANGED), first)
    uncached = PascalMTDataset(root, tasks=['human_parts'], cache_dir=False)
    np.testing.assert_array_equal(uncached.load_sample(0)['gt']['human_parts'], first)
