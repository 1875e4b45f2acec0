"""Synthetic PASCAL-MT and NYUD-MT: procedurally rendered scenes in the real layouts.

``synthesize`` writes JPEGImages, ImageSets/Context/{train,val}.txt, semseg/VOC12,
human_parts (PASCAL-Part .mat structs), normals_distill, sal_distill, pascal-context/trainval
(.mat with 'LabelMap') and json/{nyu,context}_classes.json, so that ``PascalMTDataset`` reads
them exactly like the real data. The data is meant for tests, quick starts and CI, not for
any number worth publishing.

A scene: a two-plane background (a wall-like upper plane, a floor-like lower plane), a few
objects of random VOC classes and sometimes a person made of parts. Every class has a fixed
colour, texture and shape per ``style`` (the same for every seed), so classes are learnable
from appearance; the image is shaded from the analytic normals of each shape (spheres,
cylinders, tilted planes, capsules for limbs), so normals are learnable from shading. The
salient object is the foreground object with the largest visible area, lit by a spotlight
(the rest of the scene is darker) so that saliency has a local cue. Background and object
classes outside NYUD (sky, grass, bird, ...) get ignored normals, as in the real data.

``layout='nyud'`` writes NYUD-MT instead (images, segmentation, depth, normals, edge,
gt_sets; read by ``NYUDMTDataset``): rooms seen by a pinhole camera pitched down, a back wall,
a floor and a ceiling, with objects of NYU classes resting on the floor. Depth is the distance
along the camera axis from the ray-plane intersections (objects add their bulge toward the
camera), the walls' normals are the planes' exact normals in the camera frame, and objects'
normals match their depth up to the bulge's approximation. The image darkens with distance,
a depth cue; televisions and mirrors return no depth (0), as a depth sensor does; a clutter
patch is unlabelled (0), as parts of real NYUD images are.

Files are byte-identical for the same arguments: each image has its own
``numpy.random.Generator`` seeded from (seed, style, index), and the time stamp that
``scipy.io.savemat`` writes into the .mat header is replaced by a fixed text.
"""
import colorsys
import errno
import io
import json
import os
import shutil
import tempfile
import zlib
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import scipy.io
from PIL import Image

from ..errors import ConfigError
from .nyud_mt import NYUD_CLASSES
from .pascal_mt import PERSON_CLASS, VOC_CLASSES, edges_from_label_map

README_MARKER = 'adapterkit synthetic PASCAL-MT data'
NYUD_README_MARKER = 'adapterkit synthetic NYUD-MT data'
LAYOUTS = ('pascal', 'nyud')

# Context (459-class) ids of the names the scenes use, as in PASCAL-Context.
CONTEXT_IDS = {
    'aeroplane': 2, 'bicycle': 23, 'bird': 25, 'boat': 31, 'bottle': 34, 'bus': 45, 'car': 59,
    'cat': 65, 'chair': 72, 'cow': 98, 'table': 397, 'dog': 113, 'horse': 207, 'motorbike': 258,
    'person': 284, 'pottedplant': 308, 'sheep': 347, 'sofa': 368, 'train': 416,
    'tvmonitor': 427, 'building': 44, 'ceiling': 68, 'floor': 158, 'grass': 187, 'road': 324,
    'sky': 360, 'unknown': 431, 'wall': 440,
}
# The NYUD names among them, with their NYUD ids (the loader only reads the names).
NYU_IDS = {'bicycle': 189, 'bottle': 2, 'car': 530, 'cat': 594, 'ceiling': 4, 'chair': 5,
           'dog': 701, 'floor': 11, 'person': 331, 'sofa': 83, 'table': 19, 'unknown': 20,
           'wall': 21}
# VOC class -> Context name ('diningtable' is 'table' in Context).
VOC_TO_CONTEXT = {c: ('table' if name == 'diningtable' else name)
                  for c, name in enumerate(VOC_CLASSES) if c > 0}

# Scene statistics per style; 'pretrain' is a disjoint distribution for a pretraining stage.
STYLES = {
    'default': dict(upper=('wall', 'sky'), lower=('floor', 'grass'), objects=(2, 4),
                    person_prob=0.5, cycles=(5, 12)),
    'pretrain': dict(upper=('ceiling', 'building'), lower=('road', 'floor'), objects=(3, 6),
                     person_prob=0.3, cycles=(12, 24)),
}
TEXTURES = ('plain', 'stripes', 'checker', 'dots')
SHAPES = ('ellipse', 'cylinder', 'box')
_OBJECT_CLASSES = [c for c in range(1, len(VOC_CLASSES)) if c != PERSON_CLASS]


def synthesize(out_dir: str, num_train: int = 200, num_val: int = 50,
               size: Union[int, Sequence[int]] = 128, seed: int = 0,
               style: str = 'default', layout: str = 'pascal') -> str:
    """Write a synthetic PASCAL-MT (or NYUD-MT) data set to ``out_dir`` and return its path.

    Args:
        out_dir: target folder; it must not exist, be empty, or hold an earlier output of
            this function (which is then replaced). The data is built in a temporary folder
            beside it and moved in place at the end, so a failure leaves nothing half-written.
        num_train, num_val: number of images of each split.
        size: image size, an int (square) or (height, width).
        seed: the same seed gives byte-identical files.
        style: one of ``STYLES`` (``NYUD_STYLES`` for the NYUD layout).
        layout: 'pascal' (PASCAL-MT) or 'nyud' (NYUD-MT).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f'unknown synthetic layout {layout!r}; layouts: {list(LAYOUTS)}',
                          option='layout')
    styles = NYUD_STYLES if layout == 'nyud' else STYLES
    if style not in styles:
        raise ConfigError(f'unknown synthetic style {style!r}; styles: {sorted(styles)}',
                          option='style')
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(height, width) < 32:
        raise ConfigError(f'synthetic images need a size of at least 32 pixels, got {size!r}',
                          option='size')
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ConfigError(f'need a positive number of images, got num_train={num_train}, '
                          f'num_val={num_val}', option='num_train')
    out_dir = os.path.abspath(out_dir)
    _check_target(out_dir)

    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.synth-', dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the data set is not
    try:
        write = _write_nyud if layout == 'nyud' else _write_dataset
        write(tmp, num_train, num_val, height, width, seed, style)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _check_target(out_dir: str) -> None:
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise FileExistsError(errno.EEXIST, 'synthetic data target exists and is not a folder',
                              out_dir)
    if os.listdir(out_dir) and not _is_synthetic(out_dir):
        raise FileExistsError(errno.EEXIST, 'synthetic data target is not empty and was not '
                              'written by adapterkit synth', out_dir)


def _is_synthetic(folder: str) -> bool:
    readme = os.path.join(folder, 'README.txt')
    if not os.path.isfile(readme):
        return False
    with open(readme) as f:
        return f.readline().strip() in (README_MARKER, NYUD_README_MARKER)


def _write_dataset(root: str, num_train: int, num_val: int, height: int, width: int,
                   seed: int, style: str) -> None:
    for folder in ('JPEGImages', 'ImageSets/Context', 'semseg/VOC12', 'human_parts',
                   'normals_distill', 'sal_distill', 'pascal-context/trainval', 'json'):
        os.makedirs(os.path.join(root, folder))
    appearance = _class_appearance(style)
    ids = [f'synth_{i:06d}' for i in range(1, num_train + num_val + 1)]
    for index, img_id in enumerate(ids):
        rng = np.random.default_rng([seed, zlib.crc32(style.encode()), index])
        scene = _render_scene(rng, height, width, STYLES[style], appearance)
        _write_sample(root, img_id, scene)

    for split, split_ids in (('train', ids[:num_train]), ('val', ids[num_train:])):
        _write_text(os.path.join(root, 'ImageSets/Context', f'{split}.txt'),
                    ''.join(f'{i}\n' for i in split_ids))
    _write_text(os.path.join(root, 'json/context_classes.json'),
                json.dumps(CONTEXT_IDS, indent=1, sort_keys=True))
    _write_text(os.path.join(root, 'json/nyu_classes.json'),
                json.dumps(NYU_IDS, indent=1, sort_keys=True))
    _write_text(os.path.join(root, 'README.txt'), (
        f'{README_MARKER}\n\n'
        f'Procedurally rendered scenes in the PASCAL-MT layout, written by adapterkit '
        f'(adapterkit synth).\nNot real images: use them for tests and quick starts only.\n'
        f'train: {num_train}, val: {num_val}, size: {height}x{width}, seed: {seed}, '
        f'style: {style}\n'))


def _write_text(path: str, text: str) -> None:
    with open(path, 'w') as f:
        f.write(text)


# ----------------------------------------------------------------------------- appearance

def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _class_appearance(style: str) -> Dict[int, dict]:
    """Colour, texture and shape of every object class; fixed per style, not per seed."""
    return _appearance(_OBJECT_CLASSES, f'appearance-{style}', STYLES[style]['cycles'])


def _appearance(classes: Sequence[int], key: str, cycles) -> Dict[int, dict]:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    hues = rng.permutation(len(classes)) / len(classes)
    appearance = {}
    for i, c in enumerate(classes):
        value = 0.95 if i % 2 else 0.7
        appearance[c] = dict(
            colour=_hsv_to_rgb(hues[i], 0.8, value),
            second=_hsv_to_rgb(hues[i] + 0.5, 0.5, value * 0.6),
            texture=TEXTURES[i % len(TEXTURES)],
            cycles=float(rng.uniform(*cycles)),
            angle=float(rng.uniform(0, np.pi)),
            shape=SHAPES[(i // len(TEXTURES)) % len(SHAPES)],
        )
    return appearance


def _texture(kind: str, xx: np.ndarray, yy: np.ndarray, cycles: float, angle: float,
             extent: int) -> np.ndarray:
    """Pattern in [0, 1]; ``cycles`` per image side keeps it similar at every image size."""
    f = cycles / extent
    if kind == 'stripes':
        return (np.sin(2 * np.pi * f * (xx * np.cos(angle) + yy * np.sin(angle))) > 0) * 1.0
    if kind == 'checker':
        return ((np.floor(xx * f) + np.floor(yy * f)) % 2) * 1.0
    if kind == 'dots':
        return (np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy) > 0.5) * 1.0
    return np.zeros_like(xx)


# ----------------------------------------------------------------------------- geometry

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _local(xx, yy, cx, cy, angle):
    """Coordinates in a frame rotated by ``angle`` about (cx, cy)."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _to_image_frame(nu, nv, nz, angle):
    c, s = np.cos(angle), np.sin(angle)
    return _unit(np.stack([c * nu - s * nv, s * nu + c * nv, nz], axis=-1))


def _ellipse(xx, yy, cx, cy, a, b, angle):
    """Mask and normals of a half-ellipsoid seen from the front."""
    u, v = _local(xx, yy, cx, cy, angle)
    q = (u / a) ** 2 + (v / b) ** 2
    mask = q <= 1
    nz = np.sqrt(np.clip(1 - q, 0, None)) + 0.05
    return mask, _to_image_frame(u / a, v / b, nz, angle)


def _cylinder(xx, yy, cx, cy, a, b, angle):
    """Mask and normals of a cylinder of radius a and half-length b (axis along v)."""
    u, v = _local(xx, yy, cx, cy, angle)
    mask = (np.abs(u) <= a) & (np.abs(v) <= b)
    t = np.clip(u / a, -1, 1)
    return mask, _to_image_frame(t, np.zeros_like(t), np.sqrt(1 - t ** 2) + 0.05, angle)


def _box(xx, yy, cx, cy, a, b, angle, tilt):
    """Mask and (constant) normal of a tilted flat face."""
    u, v = _local(xx, yy, cx, cy, angle)
    mask = (np.abs(u) <= a) & (np.abs(v) <= b)
    normal = _unit(np.array([tilt[0], tilt[1], 1.0], dtype=np.float32))
    return mask, np.broadcast_to(normal, xx.shape + (3,))


def _capsule(xx, yy, p0, p1, r):
    """Mask and normals of a round limb from p0 to p1 (a sphere when p0 == p1)."""
    p0, p1 = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
    d = p1 - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    ox, oy = (xx - p0[0] - t * d[0]) / r, (yy - p0[1] - t * d[1]) / r
    q = ox ** 2 + oy ** 2
    return q <= 1, _unit(np.stack([ox, oy, np.sqrt(np.clip(1 - q, 0, None)) + 0.05], axis=-1))


# ----------------------------------------------------------------------------- scene

class _Canvas:
    """Per-pixel maps of a scene; later paint occludes earlier paint."""

    def __init__(self, height: int, width: int):
        self.context = np.zeros((height, width), np.uint16)
        self.semseg = np.zeros((height, width), np.uint8)
        self.owner = np.full((height, width), -1, np.int32)  # index into self.regions
        self.normals = np.zeros((height, width, 3), np.float32)
        self.albedo = np.zeros((height, width, 3), np.float32)
        self.regions: List[Tuple[int, str]] = []  # (instance, part name or '')

    def paint(self, mask, normals, albedo, context_name, voc_class, instance, part=''):
        self.context[mask] = CONTEXT_IDS[context_name]
        self.semseg[mask] = voc_class
        self.normals[mask] = normals[mask]
        self.albedo[mask] = albedo[mask] if albedo.ndim == 3 else albedo
        self.owner[mask] = len(self.regions)
        self.regions.append((instance, part))

    def visible(self, instance: int, part=None) -> np.ndarray:
        ids = [i for i, (inst, name) in enumerate(self.regions)
               if inst == instance and (part is None or name == part)]
        return np.isin(self.owner, ids)


def _render_scene(rng, height, width, cfg, appearance) -> dict:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    extent = min(height, width)
    canvas = _Canvas(height, width)

    # Background: a frontal upper plane and a lower plane facing up (-y in the image).
    horizon = rng.uniform(0.35, 0.65) * height
    for region, names, normal in (('upper', cfg['upper'], (0, 0, 1)),
                                  ('lower', cfg['lower'], (0, -0.75, 0.66))):
        name = names[rng.integers(len(names))]
        mask = yy < horizon if region == 'upper' else yy >= horizon
        base = _hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.45, 0.8))
        pattern = _texture('stripes' if region == 'upper' else 'checker', xx, yy,
                           rng.uniform(3, 8), np.pi / 2, extent)
        albedo = base * (0.85 + 0.15 * pattern)[..., None]
        normals = np.broadcast_to(_unit(np.array(normal, np.float32)), xx.shape + (3,))
        canvas.paint(mask, normals, albedo, name, 0, instance=-1)

    classes = rng.choice(_OBJECT_CLASSES, size=rng.integers(cfg['objects'][0],
                                                            cfg['objects'][1] + 1))
    instances = [int(c) for c in classes]
    if rng.uniform() < cfg['person_prob']:
        instances.insert(int(rng.integers(len(instances) + 1)), PERSON_CLASS)
    for instance, voc_class in enumerate(instances):
        if voc_class == PERSON_CLASS:
            _paint_person(rng, canvas, xx, yy, instance, height, width)
        else:
            _paint_object(rng, canvas, xx, yy, instance, voc_class, appearance[voc_class],
                          extent)

    # The largest visible object is salient; a spotlight on it makes that visible locally.
    areas = [canvas.visible(i).sum() for i in range(len(instances))]
    salient = canvas.visible(int(np.argmax(areas)))
    light = _unit(np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0], np.float32))
    shade = (0.3 + 0.7 * np.clip(canvas.normals @ light, 0, 1)) * np.where(salient, 1.0, 0.75)
    img = canvas.albedo * shade[..., None] * 255 + rng.normal(0, 3, canvas.albedo.shape)
    return dict(img=np.clip(np.rint(img), 0, 255).astype(np.uint8), canvas=canvas,
                instances=instances, salient=salient)


def _paint_object(rng, canvas, xx, yy, instance, voc_class, look, extent):
    h, w = xx.shape
    r = rng.uniform(0.14, 0.26) * extent
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    angle = rng.uniform(0, np.pi)
    if look['shape'] == 'ellipse':
        mask, normals = _ellipse(xx, yy, cx, cy, r, r * rng.uniform(0.65, 1.0), angle)
    elif look['shape'] == 'cylinder':
        mask, normals = _cylinder(xx, yy, cx, cy, r * rng.uniform(0.45, 0.7),
                                  r * rng.uniform(0.9, 1.3), angle)
    else:
        mask, normals = _box(xx, yy, cx, cy, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.6, 1.0),
                             angle, rng.uniform(-0.6, 0.6, size=2))
    pattern = _texture(look['texture'], xx, yy, look['cycles'], look['angle'], extent)[..., None]
    albedo = look['colour'] * (1 - pattern) + look['second'] * pattern
    canvas.paint(mask, normals, albedo, VOC_TO_CONTEXT[voc_class], voc_class, instance)


def _paint_person(rng, canvas, xx, yy, instance, height, width):
    """A front-facing figure of round limbs; the person's left is the image's right."""
    s = rng.uniform(0.55, 0.9) * height
    top = rng.uniform(0.02 * height, max(height - s, 0.02 * height))
    cx = rng.uniform(0.2 * width, 0.8 * width)
    skin = _hsv_to_rgb(rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.6, 0.95))
    shirt = _hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))
    trousers = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.5))
    socks = skin if rng.uniform() < 0.5 else trousers * 0.7
    hair = _hsv_to_rgb(rng.uniform(0.0, 0.12), 0.6, rng.uniform(0.1, 0.35))
    shoes = np.array([0.12, 0.1, 0.1], np.float32)

    def limb(start, length, angle, side):
        return start[0] + side * length * np.sin(angle), start[1] + length * np.cos(angle)

    # (part name, p0, p1, radius, colour), drawn in this order.
    parts = []
    for side, prefix in ((1, 'l'), (-1, 'r')):
        hip = (cx + side * 0.06 * s, top + 0.52 * s)
        knee = limb(hip, 0.21 * s, rng.uniform(-0.05, 0.35), side)
        ankle = limb(knee, 0.2 * s, rng.uniform(-0.15, 0.25), side)
        parts += [(f'{prefix}uleg', hip, knee, 0.05 * s, trousers),
                  (f'{prefix}lleg', knee, ankle, 0.04 * s, socks),
                  (f'{prefix}foot', ankle, (ankle[0] + side * 0.05 * s, ankle[1]), 0.025 * s,
                   shoes)]
    parts += [('torso', (cx, top + 0.28 * s), (cx, top + 0.42 * s), 0.11 * s, shirt),
              ('neck', (cx, top + 0.15 * s), (cx, top + 0.19 * s), 0.035 * s, skin)]
    for side, prefix in ((1, 'l'), (-1, 'r')):
        shoulder = (cx + side * 0.12 * s, top + 0.22 * s)
        elbow = limb(shoulder, 0.16 * s, rng.uniform(0.1, 0.9), side)
        wrist = limb(elbow, 0.15 * s, rng.uniform(-0.6, 1.4), side)
        parts += [(f'{prefix}uarm', shoulder, elbow, 0.035 * s, shirt),
                  (f'{prefix}larm', elbow, wrist, 0.03 * s, skin),
                  (f'{prefix}hand', wrist, wrist, 0.035 * s, skin)]
    head = (cx, top + 0.09 * s)
    parts.append(('head', head, head, 0.085 * s, skin))

    for name, p0, p1, radius, colour in parts:
        mask, normals = _capsule(xx, yy, p0, p1, radius)
        if name == 'head':
            hair_mask = mask & (yy < head[1] - 0.035 * s)
            canvas.paint(mask & ~hair_mask, normals, colour, 'person', PERSON_CLASS, instance,
                         'head')
            canvas.paint(hair_mask, normals, hair, 'person', PERSON_CLASS, instance, 'hair')
        else:
            canvas.paint(mask, normals, colour, 'person', PERSON_CLASS, instance, name)


# ----------------------------------------------------------------------------- files

def _struct_array(records: List[tuple], fields: Tuple[str, ...]) -> np.ndarray:
    """A 1xN MATLAB struct array for scipy.io.savemat."""
    array = np.zeros((1, len(records)), dtype=[(f, 'O') for f in fields])
    for i, record in enumerate(records):
        array[0, i] = record
    return array


def _write_mat(path: str, variables: dict) -> None:
    """savemat with a fixed header text, so the same content gives the same bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True)
    data = bytearray(buffer.getvalue())
    data[:116] = f'MATLAB 5.0 MAT-file, {README_MARKER}'.encode().ljust(116)
    with open(path, 'wb') as f:
        f.write(bytes(data))


def _write_sample(root: str, img_id: str, scene: dict) -> None:
    canvas, instances = scene['canvas'], scene['instances']
    objects = []
    for instance, voc_class in enumerate(instances):
        mask = canvas.visible(instance)
        if not mask.any():
            continue
        parts = []
        if voc_class == PERSON_CLASS:
            names = dict.fromkeys(name for inst, name in canvas.regions if inst == instance)
            for name in names:
                part_mask = canvas.visible(instance, name)
                if part_mask.any():
                    parts.append((name, part_mask.astype(np.uint8)))
        objects.append((VOC_CLASSES[voc_class], np.uint8(voc_class), mask.astype(np.uint8),
                        _struct_array(parts, ('part_name', 'mask')) if parts
                        else np.zeros((0, 0))))
    salient = scene['salient'].astype(np.uint8) * 255

    Image.fromarray(scene['img']).save(os.path.join(root, 'JPEGImages', f'{img_id}.jpg'),
                                       quality=92)
    Image.fromarray(canvas.semseg).save(os.path.join(root, 'semseg/VOC12', f'{img_id}.png'))
    Image.fromarray(salient).save(os.path.join(root, 'sal_distill', f'{img_id}.png'))
    encoded = np.clip(np.rint((canvas.normals + 1) / 2 * 255), 0, 255).astype(np.uint8)
    Image.fromarray(encoded).save(os.path.join(root, 'normals_distill', f'{img_id}.png'))
    _write_mat(os.path.join(root, 'pascal-context/trainval', f'{img_id}.mat'),
               {'LabelMap': canvas.context})
    _write_mat(os.path.join(root, 'human_parts', f'{img_id}.mat'), {'anno': {
        'imname': f'{img_id}.jpg',
        'objects': _struct_array(objects, ('class', 'class_ind', 'mask', 'parts'))}})


# ----------------------------------------------------------------------------- NYUD-MT rooms

# Room statistics per style (metres and degrees); 'pretrain' is a disjoint distribution.
NYUD_STYLES = {
    'default': dict(objects=(2, 5), pitch=(20, 35), camera_height=(1.1, 1.5), wall=(3.0, 4.5),
                    room_height=2.7, cycles=(5, 12)),
    'pretrain': dict(objects=(3, 6), pitch=(8, 22), camera_height=(1.3, 1.8), wall=(4.0, 6.0),
                     room_height=3.0, cycles=(12, 24)),
}
_NYUD_ID = {name: i + 1 for i, name in enumerate(NYUD_CLASSES)}  # 1..40 on disk, 0 unlabelled
_ROOM_OBJECTS = [_NYUD_ID[n] for n in (
    'cabinet', 'bed', 'chair', 'sofa', 'table', 'bookshelf', 'desk', 'dresser', 'pillow', 'box',
    'night stand', 'toilet', 'lamp', 'bag', 'television', 'bathtub')]
_NO_DEPTH = {_NYUD_ID['television'], _NYUD_ID['mirror']}  # the sensor sees nothing there
_FOCAL = 0.9  # focal length in image widths


def _write_nyud(root: str, num_train: int, num_val: int, height: int, width: int, seed: int,
                style: str) -> None:
    for folder in ('images', 'segmentation', 'depth', 'normals', 'edge', 'gt_sets'):
        os.makedirs(os.path.join(root, folder))
    cfg = NYUD_STYLES[style]
    appearance = _appearance(_ROOM_OBJECTS, f'nyud-appearance-{style}', cfg['cycles'])
    ids = [f'synth_{i:06d}' for i in range(1, num_train + num_val + 1)]
    for index, img_id in enumerate(ids):
        rng = np.random.default_rng([seed, zlib.crc32(f'nyud-{style}'.encode()), index])
        _write_room(root, img_id, _render_room(rng, height, width, cfg, appearance))
    for split, split_ids in (('train', ids[:num_train]), ('val', ids[num_train:])):
        _write_text(os.path.join(root, 'gt_sets', f'{split}.txt'),
                    ''.join(f'{i}\n' for i in split_ids))
    _write_text(os.path.join(root, 'README.txt'), (
        f'{NYUD_README_MARKER}\n\n'
        f'Procedurally rendered rooms in the NYUD-MT layout, written by adapterkit '
        f'(adapterkit synth --layout nyud).\nNot real images: use them for tests and quick '
        f'starts only.\ntrain: {num_train}, val: {num_val}, size: {height}x{width}, '
        f'seed: {seed}, style: {style}\n'))


class _Room:
    """Per-pixel maps of a room, painted with a depth test (nearer paint wins)."""

    def __init__(self, height, width):
        self.depth = np.full((height, width), np.inf, np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.int32)
        self.normals = np.zeros((height, width, 3), np.float32)
        self.albedo = np.zeros((height, width, 3), np.float32)
        self.instances = 0

    def paint(self, mask, depth, normals, albedo, label):
        mask = mask & (depth < self.depth)
        self.depth[mask] = depth[mask]
        self.label[mask] = label
        self.normals[mask] = np.broadcast_to(normals, self.normals.shape)[mask]
        self.albedo[mask] = albedo[mask] if albedo.ndim == 3 else albedo
        self.instances += 1
        self.instance[mask] = self.instances


def _render_room(rng, height, width, cfg, appearance) -> dict:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    focal = _FOCAL * width
    pitch = np.radians(rng.uniform(*cfg['pitch']))
    camera_height = rng.uniform(*cfg['camera_height'])
    wall = rng.uniform(*cfg['wall'])
    sin, cos = np.sin(pitch), np.cos(pitch)
    # World: X right, Y down, Z forward (horizontal); the camera looks down by `pitch`. A
    # pixel's ray, scaled to 1 along the camera axis, so that t along it IS the depth.
    down = (yy - height / 2) / focal
    ray_y, ray_z = down * cos + sin, -down * sin + cos

    def plane_depth(distance, component):
        with np.errstate(divide='ignore'):
            t = distance / component
        return np.where(t > 0, t, np.inf).astype(np.float32)

    room = _Room(height, width)
    # Planes: (depth of every pixel, world normal facing the camera, NYU label, base colour).
    planes = [
        (plane_depth(wall, ray_z), (0, 0, -1), 'wall', rng.uniform(0.5, 0.85)),
        (plane_depth(camera_height, ray_y), (0, -1, 0), 'floor', rng.uniform(0.3, 0.6)),
        (plane_depth(camera_height - cfg['room_height'], ray_y), (0, 1, 0), 'ceiling', 0.9),
    ]
    for depth, normal, name, value in planes:
        base = _hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.3), value)
        pattern = _texture('checker' if name == 'floor' else 'plain', xx, yy,
                           rng.uniform(4, 9), 0.0, min(height, width))
        room.paint(np.isfinite(depth), depth, _camera_normal(normal, sin, cos),
                   base * (0.85 + 0.15 * pattern)[..., None], _NYUD_ID[name])
    if rng.uniform() < 0.6:
        _paint_wall_item(rng, room, xx, yy, planes[0][0], sin, cos)
    count = int(rng.integers(cfg['objects'][0], cfg['objects'][1] + 1))
    for label in rng.choice(_ROOM_OBJECTS, size=count):
        _paint_room_object(rng, room, xx, yy, int(label), appearance[int(label)], focal,
                           camera_height, wall, sin, cos, height, width)
    if rng.uniform() < 0.5:  # a patch of clutter nobody labelled
        cy, cx = rng.uniform(0.3, 0.9) * height, rng.uniform(0.1, 0.9) * width
        mask = (np.abs(yy - cy) < 0.05 * height) & (np.abs(xx - cx) < 0.08 * width)
        room.label[mask] = 0

    light = _unit(np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.8, -0.2), 1.0], np.float32))
    shade = 0.35 + 0.65 * np.clip(room.normals @ light, 0, 1)
    shade *= np.exp(-0.12 * (room.depth - 1.0)).clip(0.25, 1.2)  # farther is darker
    img = room.albedo * shade[..., None] * 255 + rng.normal(0, 3, room.albedo.shape)
    depth = np.where(np.isin(room.label, list(_NO_DEPTH)), 0, room.depth).astype(np.float32)
    edge = edges_from_label_map(room.instance * 64 + room.label)
    return dict(img=np.clip(np.rint(img), 0, 255).astype(np.uint8), label=room.label,
                depth=depth, normals=room.normals, edge=edge)


def _camera_normal(world, sin, cos):
    """A world normal in the image convention (x right, y down, z toward the camera)."""
    x, y, z = world
    return _unit(np.array([x, y * cos - z * sin, -(y * sin + z * cos)], np.float32))


def _paint_wall_item(rng, room, xx, yy, wall_depth, sin, cos):
    """A picture (or a mirror: no depth) flat on the back wall."""
    h, w = xx.shape
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.35) * h
    mask = (np.abs(xx - cx) < rng.uniform(0.06, 0.15) * w) & \
        (np.abs(yy - cy) < rng.uniform(0.05, 0.1) * h) & np.isfinite(wall_depth)
    name = 'mirror' if rng.uniform() < 0.3 else 'picture'
    colour = _hsv_to_rgb(rng.uniform(), 0.6, 0.8) if name == 'picture' else \
        np.array([0.8, 0.85, 0.9], np.float32)
    room.paint(mask, wall_depth - 0.01, _camera_normal((0, 0, -1), sin, cos), colour,
               _NYUD_ID[name])


def _paint_room_object(rng, room, xx, yy, label, look, focal, camera_height, wall, sin, cos,
                       height, width):
    """An object resting on the floor; its shape's normals bulge toward the camera."""
    radius = rng.uniform(0.25, 0.6)
    world = np.array([rng.uniform(-1.2, 1.2), camera_height - radius,
                      rng.uniform(1.5, wall - 0.3)])
    # Camera frame of the centre: x right, y down, z along the camera axis (its depth).
    x, y, z = world[0], world[1] * cos - world[2] * sin, world[1] * sin + world[2] * cos
    u, v, r = width / 2 + focal * x / z, height / 2 + focal * y / z, focal * radius / z
    angle = rng.uniform(0, np.pi)
    if look['shape'] == 'ellipse':
        mask, normals = _ellipse(xx, yy, u, v, r, r * rng.uniform(0.65, 1.0), angle)
        depth = z - radius * normals[..., 2]
    elif look['shape'] == 'cylinder':
        mask, normals = _cylinder(xx, yy, u, v, r * rng.uniform(0.45, 0.7),
                                  r * rng.uniform(0.9, 1.3), angle)
        depth = z - radius * normals[..., 2]
    else:  # a flat tilted face: the plane through the centre with that normal
        tilt = rng.uniform(-0.6, 0.6, size=2)
        mask, normals = _box(xx, yy, u, v, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.6, 1.0),
                             angle, tilt)
        depth = z - radius + (tilt[0] * (xx - u) + tilt[1] * (yy - v)) * z / focal
    pattern = _texture(look['texture'], xx, yy, look['cycles'], look['angle'],
                       min(height, width))[..., None]
    albedo = look['colour'] * (1 - pattern) + look['second'] * pattern
    room.paint(mask, depth.astype(np.float32), normals, albedo, label)


def _write_room(root: str, img_id: str, scene: dict) -> None:
    Image.fromarray(scene['img']).save(os.path.join(root, 'images', f'{img_id}.png'))
    Image.fromarray(scene['label']).save(os.path.join(root, 'segmentation', f'{img_id}.png'))
    encoded = np.clip(np.rint((scene['normals'] + 1) / 2 * 255), 0, 255).astype(np.uint8)
    Image.fromarray(encoded).save(os.path.join(root, 'normals', f'{img_id}.png'))
    Image.fromarray(scene['edge'] * np.uint8(255)).save(os.path.join(root, 'edge',
                                                                     f'{img_id}.png'))
    np.save(os.path.join(root, 'depth', f'{img_id}.npy'), scene['depth'])
