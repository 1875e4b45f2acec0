"""Data files: broken files are found when a data set is built, and named when read."""

import numpy as np
import pytest
import scipy.io
from PIL import Image

from adapterkit.datasets.files import (DatasetError, DerivedCache, check_file, check_files,
                                       read_label_png, read_rgb)


def _jpeg(path, size=(24, 32)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path, quality=90)
    return path


def _truncate(path, keep=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
    return path


def test_complete_files_pass_the_check(tmp_path):
    paths = [_jpeg(str(tmp_path / 'a.jpg'))]
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / 'b.png')
    scipy.io.savemat(tmp_path / 'c.mat', {'x': np.arange(12).reshape(3, 4)})
    scipy.io.savemat(tmp_path / 'd.mat', {'x': np.arange(500.0)}, do_compression=True)
    np.save(tmp_path / 'e.npy', np.ones((7, 9), np.float32))
    paths += [str(tmp_path / n) for n in ('b.png', 'c.mat', 'd.mat', 'e.npy')]
    assert [check_file(p) for p in paths] == [''] * 5
    check_files(paths, 'five files')


def test_a_jpeg_with_bytes_after_its_end_marker_is_complete(tmp_path):
    path = _jpeg(str(tmp_path / 'a.jpg'))
    with open(path, 'ab') as f:
        f.write(b'\0' * 100)  # some writers pad; decoders stop at the end marker
    assert check_file(path) == ''


@pytest.mark.parametrize('name, save, problem', [
    ('a.jpg', lambda p: _jpeg(p), 'truncated JPEG'),
    ('b.png', lambda p: Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30))
     .save(p), 'truncated PNG'),
    ('c.mat', lambda p: scipy.io.savemat(p, {'x': np.arange(200.0)}), 'truncated .mat'),
    ('d.mat', lambda p: scipy.io.savemat(p, {'x': np.arange(200.0)}, do_compression=True),
     'truncated .mat'),
    ('e.npy', lambda p: np.save(p, np.ones((20, 20))), 'truncated .npy'),
])
def test_a_truncated_file_is_named_with_what_is_wrong(tmp_path, name, save, problem):
    path = str(tmp_path / name)
    save(path)
    _truncate(path, 0.6)
    assert check_file(path).startswith(f'{path}: {problem}')
    with pytest.raises(DatasetError, match='^three files: .*' + problem) as err:
        check_files([path, str(tmp_path / 'missing.png'), path], 'three files')
    assert '\n' not in str(err.value) and '2 more' in str(err.value)


def test_empty_and_missing_files_are_named(tmp_path):
    (tmp_path / 'a.png').write_bytes(b'')
    assert check_file(str(tmp_path / 'a.png')) == f'{tmp_path / "a.png"}: empty file'
    assert check_file(str(tmp_path / 'b.png')).startswith(f'{tmp_path / "b.png"}: cannot read')


def test_a_truncated_jpeg_is_an_error_naming_it_when_read(tmp_path):
    # PIL's own error ("image file is truncated (N bytes not processed)") names no file, and
    # OpenCV decodes a truncated JPEG silently with grey where data is missing.
    path = _truncate(_jpeg(str(tmp_path / 'a.jpg'), (64, 64)), 0.7)
    with pytest.raises(DatasetError, match=f'^{path}: truncated JPEG'):
        read_rgb(path)


def test_an_undecodable_label_png_is_an_error_naming_it(tmp_path):
    path = str(tmp_path / 'label.png')
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(path)
    data = bytearray(open(path, 'rb').read())
    data[40:60] = b'\xff' * 20  # damage the image data, keep the file complete
    open(path, 'wb').write(bytes(data))
    assert check_file(path) == ''  # complete, so only decoding can tell
    with pytest.raises(DatasetError, match=f'^{path}: cannot be decoded'):
        read_label_png(path)


def test_label_pngs_keep_palette_indices_and_must_be_single_channel(tmp_path):
    labels = np.array([[0, 1, 2], [20, 255, 7]], np.uint8)
    image = Image.fromarray(labels, mode='P')
    image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    image.save(tmp_path / 'p.png')
    np.testing.assert_array_equal(read_label_png(str(tmp_path / 'p.png')), labels)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(DatasetError, match='rgb.png: expected a single-channel 8-bit'):
        read_label_png(str(tmp_path / 'rgb.png'))


def test_images_decode_to_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / 'r.png')
    np.testing.assert_array_equal(read_rgb(str(tmp_path / 'r.png')), rgb)


def test_a_worker_error_keeps_its_one_line():
    # What torch's DataLoader does with an error raised in a worker process.
    from torch.utils.data._utils import ExceptionWrapper
    try:
        raise DatasetError('/data/a.jpg: truncated JPEG (no end-of-image marker)')
    except DatasetError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(DatasetError) as err:
        wrapped.reraise()
    assert str(err.value) == '/data/a.jpg: truncated JPEG (no end-of-image marker)'


def test_derived_maps_are_cached_per_source_version(tmp_path):
    source = tmp_path / 'parts.mat'
    source.write_bytes(b'first')
    cache, calls = DerivedCache(str(tmp_path / 'cache')), []

    def derive(value):
        calls.append(value)
        return np.full((3, 4), value, np.uint8)

    np.testing.assert_array_equal(cache.get('parts', str(source), lambda: derive(1)), 1)
    np.testing.assert_array_equal(cache.get('parts', str(source), lambda: derive(2)), 1)
    source.write_bytes(b'second, longer')  # a new version of the source: a new entry
    np.testing.assert_array_equal(cache.get('parts', str(source), lambda: derive(3)), 3)
    assert calls == [1, 3]
    assert not [p for p in (tmp_path / 'cache/parts').iterdir() if 'tmp' in p.name]


def test_an_unwritable_cache_warns_once_and_derives_every_time(tmp_path):
    source = tmp_path / 'parts.mat'
    source.write_bytes(b'x')
    blocker = tmp_path / 'cache'
    blocker.write_text('a file where the cache folder would be')
    cache = DerivedCache(str(blocker))
    with pytest.warns(UserWarning, match='cannot be written'):
        cache.get('parts', str(source), lambda: np.zeros((2, 2), np.uint8))
    assert cache.folder is None
    assert cache.get('parts', str(source), lambda: np.ones((2, 2), np.uint8)).sum() == 4
