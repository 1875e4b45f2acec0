"""Multi-task transforms: every target moves with the image and keeps its encoding."""
import cv2
import numpy as np
import pytest
import torch

from adapterkit.datasets import (MultiTaskRandomAffine, MultiTaskRandomFlip,
                                 MultiTaskRandomScaleRotate, MultiTaskResize, PackMultiTaskInputs)
from adapterkit.datasets.transforms import affine, scale_rotate

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
    for seed in range(3):
        np.random.seed(seed)
        np.random.uniform(-20, 20)  # the transform draws the angle, then the scale
        scale = np.random.uniform(0.75, 1.25)
        np.random.seed(seed)
        sample = _sample(with_depth=True)
        before = {k: v.copy() for k, v in sample['gt'].items()}
        out = MultiTaskRandomScaleRotate(rotation=(-20, 20), scale=(0.75, 1.25))(sample)
        assert out['img'].shape == (H, W, 3) and out['img'].dtype == np.uint8
        for task in ('semseg', 'human_parts', 'sal'):
            assert out['gt'][task].shape == (H, W)
            assert set(np.unique(out['gt'][task])) <= set(np.unique(before[task])) | {0}
        depth = out['gt']['depth']
        assert depth.shape == (H, W)
        # nearest keeps depth values, which are then divided by the scale
        found = np.isclose(depth[depth > 0][:, None] * scale, before['depth'].ravel()[None],
                           rtol=1e-6, atol=0).any(1)
        assert found.all()
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
        assert gt[task].dtype == torch.uint8 and gt[task].shape == (H, W)
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


# ---------------------------------------------------------------- normals under rotation
# The reference (ScaleNRotate of ASTMT / MTLoRA) turns the in-plane components of every
# normal by the rotation that moves the pixels: (x, y) -> (c x + s y, -s x + c y), with
# c, s = cos, sin of OpenCV's angle (x right, y down, positive = counter-clockwise on screen).

def _normals_sample(normals):
    h, w = normals.shape[:2]
    return {'img': np.zeros((h, w, 3), np.uint8), 'gt': {'normals': normals},
            'img_id': 'n', 'ori_shape': (h, w), 'img_shape': (h, w)}


def test_rotation_turns_a_constant_normal_as_the_reference_does():
    normals = np.broadcast_to(np.float32([0.6, 0.0, 0.8]), (9, 9, 3)).copy()
    out = scale_rotate(_normals_sample(normals), angle=-3.3433, scale=1.0)['gt']['normals']
    valid = ~_check_normals(out)
    # By hand: 0.6 * cos(3.3433 deg) = 0.598979, 0.6 * sin(3.3433 deg) = 0.034991.
    expected = np.broadcast_to([0.598979, 0.034991, 0.8], out[valid].shape)
    np.testing.assert_allclose(out[valid], expected, atol=2e-6)
    assert valid[1:-1, 1:-1].all()


def test_a_quarter_turn_moves_and_turns_a_normal_gradient_exactly():
    # Raw vectors (x / 8, y / 8 - 0.5, 1) at pixel (x, y); the loader's vectors need not be unit.
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float32)
    raw = np.stack([xx / 8, yy / 8 - 0.5, np.ones_like(xx)], axis=-1)
    out = scale_rotate(_normals_sample(raw), angle=90, scale=1.0)['gt']['normals']
    # About the centre (4.5, 4.5), 90 degrees sends pixel (x, y) to (y, 9 - x), so output
    # pixel (x', y') = (2, 3) shows input pixel (6, 2): raw (0.75, -0.25, 1), turned to
    # (y, -x, z) = (-0.25, -0.75, 1), of length sqrt(1.625).
    np.testing.assert_allclose(out[3, 2], np.float32([-0.25, -0.75, 1]) / np.sqrt(1.625),
                               atol=1e-6)
    # Output (7, 8) shows input (1, 7): raw (0.125, 0.375, 1) -> (0.375, -0.125, 1).
    np.testing.assert_allclose(out[8, 7], np.float32([0.375, -0.125, 1]) / np.sqrt(1.15625),
                               atol=1e-6)
    assert (out[0] == 255).all()  # row y' = 0 would come from x = 9, outside the input


def _keys_linear_error(a=-0.75):
    """Largest error of OpenCV's cubic kernel (Keys, a = -0.75) on f(x) = x, per unit slope."""
    def kernel(d):
        d = np.abs(d)
        return np.where(d <= 1, (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1,
                        np.where(d < 2, a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a, 0))
    t = np.linspace(0, 1, 1001)[:, None]
    taps = np.arange(-1, 3)[None, :]
    return float(np.abs((kernel(t - taps) * taps).sum(1) - t[:, 0]).max())


def test_any_rotation_and_scale_move_and_turn_normals_like_the_formula():
    angle, scale, size = 17.0, 1.2, 33
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    slope = 1 / size

    def field(x, y):
        return np.stack([x * slope, 0.5 - y * slope, np.ones_like(x)], axis=-1)

    out = scale_rotate(_normals_sample(field(xx, yy).astype(np.float32)), angle, scale)
    out = out['gt']['normals'].astype(np.float64)
    # Independent formulation: output pixel p shows the input at M^-1 p, turned by R(angle).
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    inverse = cv2.invertAffineTransform(matrix)
    src_x = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
    src_y = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    v = field(src_x, src_y)
    expected = np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1],
                         v[..., 2]], axis=-1)
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    inside = (src_x >= 2) & (src_x <= size - 3) & (src_y >= 2) & (src_y <= size - 3)
    # Cubic interpolation of a linear field errs by the kernel's linear error plus OpenCV's
    # 1/32-pixel rounding of the source position, per unit slope; normalising a vector of
    # length >= 1 at most doubles an error.
    tolerance = 2 * slope * (_keys_linear_error() + 1 / 64) + 1e-6
    np.testing.assert_allclose(out[inside], expected[inside], atol=tolerance)
    assert inside.sum() > size * size / 3


def test_scaling_divides_depth_and_keeps_invalid_depth_invalid():
    depth = np.full((16, 16), 3.0, np.float32)
    depth[:, :4] = 0
    sample = {'img': np.zeros((16, 16, 3), np.uint8), 'gt': {'depth': depth},
              'img_id': 'd', 'ori_shape': (16, 16), 'img_shape': (16, 16)}
    out = scale_rotate(sample, angle=0.0, scale=1.5)['gt']['depth']
    assert set(np.unique(out)) == {0.0, np.float32(2.0)}


# ---------------------------------------------------------------- one resampling per map

def _kernel_error_constants(a=-0.75):
    """(e1, e2): OpenCV's cubic kernel reproduces f(x) = x up to e1 * f' and leaves a
    second-order error of at most e2 * max|f''|, per pass (from the kernel, not a CPU)."""
    def kernel(d):
        d = np.abs(d)
        return np.where(d <= 1, (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1,
                        np.where(d < 2, a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a, 0))
    t = np.linspace(0, 1, 1001)[:, None]
    taps = np.arange(-1, 3)[None, :]
    weights = kernel(t - taps)
    e1 = np.abs((weights * taps).sum(1) - t[:, 0]).max()
    e2 = np.abs((weights * (taps - t) ** 2).sum(1)).max() / 2
    return float(e1), float(e2)


def _bound(field, passes, stretch):
    """Interpolation error bound of ``passes`` cubic resamplings of a smooth ``field``
    (H x W [x C]), whose derivatives grow by at most ``stretch`` between passes; OpenCV's
    warpAffine also rounds source positions to 1/32 pixel."""
    e1, e2 = _kernel_error_constants()
    field = field.astype(np.float64)
    g1 = max(np.abs(np.diff(field, axis=ax)).max() for ax in (0, 1)) * stretch
    g2 = max(np.abs(np.diff(field, 2, axis=ax)).max() for ax in (0, 1)) * 2 * stretch ** 2
    return passes * ((e1 + 1 / 64) * g1 + e2 * g2)


def _smooth_sample(h=40, w=52):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 127.5 + 60 * np.stack([np.sin(xx / 9), np.cos(yy / 11), np.sin((xx + yy) / 13)], -1)
    raw = np.stack([0.5 * np.sin(xx / 10), 0.5 * np.cos(yy / 12), np.ones_like(xx)], -1)
    field = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    normals = field.astype(np.float32)
    normals[:8, :10] = 255
    semseg = np.zeros((h, w), np.uint8)
    semseg[5:30, 12:40] = 3
    semseg[18:, 30:] = 9
    depth = (1 + 0.5 * (xx // 8)).astype(np.float32)  # in steps, like labels
    depth[25:, :15] = 0
    sample = {'img': np.clip(np.rint(img), 0, 255).astype(np.uint8),
              'gt': {'normals': normals, 'semseg': semseg, 'depth': depth},
              'img_id': 's', 'ori_shape': (h, w), 'img_shape': (h, w)}
    return sample, img, field


def _chain(size, scale_choices=None):
    return [MultiTaskRandomFlip(0.5),
            MultiTaskRandomScaleRotate((-20, 20), (0.75, 1.25), scale_choices),
            MultiTaskResize(size)]


def _neighbourhood_has(reference, values):
    """Per pixel: does ``values`` occur in the 3x3 neighbourhood of ``reference``? Outside
    the picture lies the transforms' border value 0."""
    pad = np.pad(reference, 1)
    h, w = reference.shape
    return np.any([pad[dy:dy + h, dx:dx + w] == values for dy in range(3) for dx in range(3)],
                  axis=0)


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_random_affine_equals_flip_scale_rotate_resize_within_interpolation_error(seed):
    size = (33, 45)
    np.random.seed(seed)
    chained, img, field = _smooth_sample()
    for transform in _chain(size):
        chained = transform(chained)
    np.random.seed(seed)
    fused = MultiTaskRandomAffine(0.5, (-20, 20), (0.75, 1.25), size)(_smooth_sample()[0])
    assert fused['img_shape'] == chained['img_shape'] == size
    # Away from the border (where both fill in zeros) values agree to the interpolation
    # error: two cubic passes against one, 1/scale <= 1.34 and 52/45 between passes.
    inside = cv2.erode((chained['img'] > 0).all(-1).astype(np.uint8), np.ones((9, 9)),
                       borderValue=0).astype(bool)
    img_tolerance = _bound(img, 3, 1.34 * 52 / 45) + 1.5  # + the uint8 roundings
    assert np.abs(fused['img'].astype(float) - chained['img'])[inside].max() <= img_tolerance
    a, b = chained['gt']['normals'], fused['gt']['normals']
    both = (a[..., 0] != 255) & (b[..., 0] != 255)
    both = cv2.erode(both.astype(np.uint8), np.ones((9, 9)), borderValue=0).astype(bool)
    tolerance = 2 * _bound(field, 3, 1.34 * 52 / 45)  # 2: renormalising a unit vector
    np.testing.assert_allclose(b[both], a[both], atol=tolerance)
    assert both.sum() > 300
    # Nearest-neighbour maps: a value that differs is one pixel away in the chained result.
    for task in ('semseg', 'depth'):
        a, b = chained['gt'][task], fused['gt'][task]
        assert _neighbourhood_has(a, b).all()
        assert (a != b).mean() < 0.1


def test_random_affine_draws_like_the_three_transforms():
    sample = _smooth_sample()[0]
    np.random.seed(5)
    flip = np.random.rand() < 0.5
    angle = np.random.uniform(-10, 10)
    scale = (1.0, 1.2, 1.5)[np.random.randint(3)]
    np.random.seed(5)
    drawn = MultiTaskRandomAffine(0.5, (-10, 10), size=(20, 26),
                                  scale_choices=(1.0, 1.2, 1.5))(_smooth_sample()[0])
    given = affine(sample, flip, angle, scale, (20, 26))
    for task in ('normals', 'semseg', 'depth'):
        np.testing.assert_array_equal(drawn['gt'][task], given['gt'][task])
    np.testing.assert_array_equal(drawn['img'], given['img'])


def test_random_affine_keeps_a_fully_ignored_mask_ignored_at_the_new_size():
    sample = _smooth_sample()[0]
    sample['gt']['human_parts'] = np.full((40, 52), 255, np.uint8)
    out = affine(sample, True, 20.0, 0.75, (16, 24))
    assert out['gt']['human_parts'].shape == (16, 24)
    assert (out['gt']['human_parts'] == 255).all()
    assert out['gt']['semseg'][0, 0] == 0  # other masks get the 0 border


# ---------------------------------------------------------------- resampled on the device

def test_random_affine_on_the_device_equals_opencv_within_interpolation_error():
    from mmengine.dataset import pseudo_collate

    from adapterkit.models import MultiTaskDataPreprocessor
    pre = MultiTaskDataPreprocessor(mean=(0, 0, 0), std=(1, 1, 1))
    size, draws = (33, 45), [(0, (40, 52)), (1, (36, 60)), (2, (40, 52))]  # two picture sizes
    opencv, device, fields = [], [], []
    for seed, shape in draws:
        for on_device, out in ((False, opencv), (True, device)):
            np.random.seed(seed)
            sample, img, field = _smooth_sample(*shape)
            sample['gt']['human_parts'] = np.full(shape, 255, np.uint8)  # no annotation
            transform = MultiTaskRandomAffine(0.5, (-20, 20), (0.75, 1.25), size,
                                              on_device=on_device)
            out.append(PackMultiTaskInputs()(transform(sample)))
        fields.append((img, field))
    assert device[1]['inputs'].shape == (3, 36, 60)  # left as on disk, resampled in the batch
    a, b = pre(pseudo_collate(opencv)), pre(pseudo_collate(device))
    assert b['inputs'].shape == (3, 3) + size and b['data_samples']['img_shape'] == [size] * 3
    # OpenCV rounds source positions to 1/32 pixel and the image to uint8: at most
    # 1/64 px x the steepest slope (60 / 9 grey levels per pixel, x 1.34 for the scale) + 1.
    img_tolerance = 60 / 9 * 1.34 / 64 + 1
    assert (a['inputs'] - b['inputs']).abs().max() <= img_tolerance
    ga, gb = a['data_samples']['gt'], b['data_samples']['gt']
    assert gb['semseg'].dtype == torch.int64 and (gb['human_parts'] == 255).all()
    for task in ('semseg', 'depth'):
        for x, y in zip(ga[task].numpy(), gb[task].numpy()):
            x, y = x.reshape(size), y.reshape(size)
            assert _neighbourhood_has(x, y).all() and (x != y).mean() < 0.01
    na, nb = ga['normals'].permute(0, 2, 3, 1).numpy(), gb['normals'].permute(0, 2, 3, 1).numpy()
    both = (na[..., 0] != 255) & (nb[..., 0] != 255)
    assert both.mean() > 0.5 and ((na[..., 0] != 255) != (nb[..., 0] != 255)).mean() < 0.01
    tolerance = 2 * max(_bound(field, 1, 1.34) for _, field in fields)
    np.testing.assert_allclose(nb[both], na[both], atol=tolerance)
