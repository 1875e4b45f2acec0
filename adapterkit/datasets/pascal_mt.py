"""PASCAL-Context multi-task dataset (PASCAL-MT) read from its published layout.

Layout under ``data_root`` (see docs and ``shared/reference/PASCAL_MT.md``)::

    JPEGImages/<id>.jpg                  RGB image
    ImageSets/Context/<split>.txt        one id per line
    semseg/VOC12/<id>.png                21 VOC classes; semseg/pascal-context/<id>.png otherwise
    human_parts/<id>.mat                 PASCAL-Part struct 'anno'
    normals_distill/<id>.png             RGB, n = 2 * v / 255 - 1
    sal_distill/<id>.png                 grey, target = v / 255 > 0.5
    pascal-context/trainval/<id>.mat     'LabelMap' (459 Context classes): edges, normals mask
    json/nyu_classes.json, json/context_classes.json   normals validity (see below)

Only the files of the selected tasks are required and read. Every one of them is checked
when the data set is built (present, not empty, not truncated: ``files.check_file``), so a
broken file stops the run before training with one line naming it; a file that passes the
check but cannot be decoded is named when it is read.

Decisions worth knowing:

* Normals are kept only where the Context class of the pixel also exists in NYUD (the
  distilled normals come from a network trained on NYUD). As in the public loaders (ASTMT,
  MTI-Net, MTLoRA), the valid Context ids are the ids in ``json/context_classes.json`` of every
  name listed in ``json/nyu_classes.json`` except 'unknown', plus 'tvmonitor'. An explicit
  ``normals_valid_classes`` argument (Context ids) takes precedence over the json files.
  Invalid and zero-length pixels hold 255.0 in all three channels.
* Images without an annotated person get an all-255 (ignored) human-parts map, so they add
  nothing to the human-parts loss or metric.
* The human-parts map of an image is rasterised from its PASCAL-Part .mat once and then read
  from a PNG cache (``files.DerivedCache``; by default ``<data_root>/.cache``): parsing the
  .mat struct costs more than the rest of loading an image. The same goes for edges.
* Edges are ``thin(|Laplacian(LabelMap)| > 0)`` like the reference, which uses
  ``skimage.morphology.thin``. scikit-image is not a dependency, so :func:`thin` implements the
  same two-subiteration algorithm (Guo & Hall 1989, as described by Lam, Lee & Suen 1992) in
  numpy. During development it gave scikit-image 0.26's result pixel for pixel on 300 random
  masks and Laplacian edge maps; the test suite checks it on hand-made cases only.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
from mmengine.dataset import BaseDataset

from ..errors import ConfigError, MissingFileError
from ..registry import DATASETS, TASKS
from .files import DatasetError, DerivedCache, check_files, read_label_png, read_mat, read_rgb

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
HUMAN_PART_CLASSES = ('background', 'head', 'torso', 'upper arm', 'lower arm', 'upper leg',
                      'lower leg')
PERSON_CLASS = 15  # 'class_ind' of a person in PASCAL-Part

# PASCAL-Part part names of a person -> 7-class human-parts label.
PART_TO_CLASS = {
    **dict.fromkeys(('hair', 'head', 'lear', 'rear', 'leye', 'reye', 'lebrow', 'rebrow',
                     'nose', 'mouth'), 1),
    **dict.fromkeys(('torso', 'neck'), 2),
    **dict.fromkeys(('luarm', 'ruarm'), 3),
    **dict.fromkeys(('llarm', 'rlarm', 'lhand', 'rhand'), 4),
    **dict.fromkeys(('luleg', 'ruleg'), 5),
    **dict.fromkeys(('llleg', 'rlleg', 'lfoot', 'rfoot'), 6),
}

PASCAL_TASKS = ('semseg', 'human_parts', 'sal', 'normals', 'edge')
IGNORE = 255

# Files each task needs besides the image ('semseg' is resolved separately: VOC12 first).
_TASK_FILES = {
    'human_parts': ('human_parts_path', 'human_parts/{}.mat'),
    'sal': ('sal_path', 'sal_distill/{}.png'),
    'normals': ('normals_path', 'normals_distill/{}.png'),
}
_CONTEXT_FILE = 'pascal-context/trainval/{}.mat'
NYU_JSON = 'json/nyu_classes.json'
CONTEXT_JSON = 'json/context_classes.json'


@DATASETS.register_module()
class PascalMTDataset(BaseDataset):
    """PASCAL-MT: semseg, human_parts, sal, normals and edge on PASCAL-Context images.

    Each item, before the pipeline, is ``{'img': HxWx3 uint8 RGB, 'gt': {task: array},
    'img_id': str, 'ori_shape': (H, W), 'img_shape': (H, W)}`` with uint8 maps for
    semseg / human_parts / sal / edge (255 = ignore) and float32 HxWx3 normals (255 = ignore).

    Args:
        data_root: folder holding the PASCAL-MT layout.
        split: name of a file in ``ImageSets/Context`` ('train' or 'val').
        tasks: subset of ``PASCAL_TASKS``; only their files are needed and loaded.
        pipeline: transforms applied to each loaded item.
        normals_valid_classes: Context ids whose pixels keep their normals; by default taken
            from the json files in ``data_root/json`` (see the module docstring).
        cache_dir: where derived label maps are cached (None: ``<data_root>/.cache``; False:
            no cache).
        check_files: check every needed file's header and length when the data set is built.
        **kwargs: the other ``mmengine.dataset.BaseDataset`` arguments.
    """

    METAINFO = dict(semseg_classes=VOC_CLASSES, human_parts_classes=HUMAN_PART_CLASSES)

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 tasks: Sequence[str] = ('semseg', 'human_parts', 'sal', 'normals'),
                 pipeline: Sequence = (),
                 normals_valid_classes: Optional[Sequence[int]] = None,
                 cache_dir: Union[str, None, bool] = None,
                 check_files: bool = True,
                 **kwargs):
        self.tasks = check_tasks(tasks)
        self.split = split
        self._explicit_normals_classes = normals_valid_classes
        self.normals_valid_classes: Optional[np.ndarray] = None
        self._cache_dir, self._check_files = cache_dir, check_files
        metainfo = dict(kwargs.pop('metainfo', None) or {}, tasks=self.tasks)
        super().__init__(data_root=data_root, pipeline=list(pipeline), metainfo=metainfo,
                         **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the split file and the paths of every needed file, checking them all."""
        ids = read_split(self.data_root, osp.join('ImageSets', 'Context', f'{self.split}.txt'),
                         'PASCAL-MT')
        self.cache = DerivedCache(osp.join(self.data_root, '.cache') if self._cache_dir is None
                                  else self._cache_dir or None)
        if 'normals' in self.tasks:
            self.normals_valid_classes = self._normals_classes()

        data_list, missing = [], []
        for img_id in ids:
            info = dict(img_id=img_id, img_path=self._path('JPEGImages/{}.jpg', img_id))
            if 'semseg' in self.tasks:
                voc = self._path('semseg/VOC12/{}.png', img_id)
                info['semseg_path'] = voc if osp.isfile(voc) else self._path(
                    'semseg/pascal-context/{}.png', img_id)
            for task, (key, pattern) in _TASK_FILES.items():
                if task in self.tasks:
                    info[key] = self._path(pattern, img_id)
            if 'normals' in self.tasks or 'edge' in self.tasks:
                info['context_path'] = self._path(_CONTEXT_FILE, img_id)
            missing += [p for k, p in info.items() if k.endswith('_path') and not osp.isfile(p)]
            data_list.append(info)
        if missing:
            raise MissingFileError(
                f'PASCAL-MT: {len(missing)} file(s) of split {self.split!r} with tasks '
                f'{list(self.tasks)} are missing, e.g. {missing[0]}', file=missing[0])
        if self._check_files:
            check_files((p for info in data_list for k, p in info.items()
                         if k.endswith('_path')), f'PASCAL-MT split {self.split!r}')
        return data_list

    def prepare_data(self, idx: int):
        return self.pipeline(self.load_sample(idx))

    def load_sample(self, idx: int) -> dict:
        """The loaded item ``idx`` before the pipeline (format in the class docstring)."""
        info = self.get_data_info(idx)
        img = read_rgb(info['img_path'])
        shape = img.shape[:2]
        gt: Dict[str, np.ndarray] = {}
        if 'semseg' in self.tasks:
            gt['semseg'] = read_label_png(info['semseg_path'])
        if 'human_parts' in self.tasks:
            path = info['human_parts_path']
            gt['human_parts'] = self.cache.get('human_parts', path,
                                               lambda: load_human_parts(path, shape))
        if 'sal' in self.tasks:
            # v / 255 > 0.5 for integer v
            gt['sal'] = (read_label_png(info['sal_path']) > 127).view(np.uint8)
        if 'normals' in self.tasks:
            label_map = load_label_map(info['context_path'])
            gt['normals'] = load_normals(info['normals_path'], label_map,
                                         self.normals_valid_classes)
        if 'edge' in self.tasks:
            path = info['context_path']
            gt['edge'] = self.cache.get('edge', path,
                                        lambda: edges_from_label_map(load_label_map(path)))
        for task, target in gt.items():
            if target.shape[:2] != shape:
                raise DatasetError(f'PASCAL-MT {task} target of {info["img_id"]!r} is '
                                   f'{target.shape[:2]}, image is {shape}', task=task)
        return dict(img=img, gt=gt, img_id=info['img_id'], ori_shape=shape, img_shape=shape)

    def _path(self, pattern: str, img_id: str) -> str:
        return osp.join(self.data_root, pattern.format(img_id))

    def _normals_classes(self) -> np.ndarray:
        if self._explicit_normals_classes is not None:
            return np.asarray(sorted(self._explicit_normals_classes), dtype=np.int64)
        nyu_file, context_file = (osp.join(self.data_root, f) for f in (NYU_JSON, CONTEXT_JSON))
        for path in (nyu_file, context_file):
            if not osp.isfile(path):
                raise MissingFileError(
                    f'PASCAL-MT normals need {path} (the NYU-compatible Context classes) or an '
                    f'explicit normals_valid_classes argument', file=path)
        with open(nyu_file) as f:
            nyu_names = json.load(f)
        with open(context_file) as f:
            context_ids = json.load(f)
        return normals_valid_classes_from_names(nyu_names, context_ids)


def check_tasks(tasks: Sequence[str]) -> tuple:
    """The tasks as a tuple, or one error naming the unknown task and the known ones."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not tasks:
        raise ConfigError(f'PascalMTDataset needs at least one task of {list(PASCAL_TASKS)}',
                          key='tasks')
    for task in tasks:
        if task not in PASCAL_TASKS:
            known = 'registered' if TASKS.get(task) is not None else 'unknown'
            raise ConfigError(f'{known} task {task!r} is not provided by PASCAL-MT, which '
                              f'provides {list(PASCAL_TASKS)}', task=task)
    return tasks


def normals_valid_classes_from_names(nyu_names, context_ids: Dict[str, int]) -> np.ndarray:
    """Context ids of the classes NYUD also has (the reference's rule, 'tvmonitor' added)."""
    valid = [context_ids[name] for name in nyu_names
             if name in context_ids and name != 'unknown']
    if 'tvmonitor' in context_ids:
        valid.append(context_ids['tvmonitor'])
    return np.asarray(sorted(set(valid)), dtype=np.int64)


def read_split(data_root: str, split_file: str, name: str) -> List[str]:
    """The ids listed in ``data_root/split_file``; one error naming what is missing."""
    if not osp.isdir(data_root):
        raise MissingFileError(f'{name}: data root not found: {data_root}', file=data_root)
    path = osp.join(data_root, split_file)
    if not osp.isfile(path):
        raise MissingFileError(f'{name}: split file not found: {path}', file=path)
    with open(path) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        raise DatasetError(f'{name}: split file lists no image: {path}', file=path)
    return ids


def load_label_map(path: str) -> np.ndarray:
    """The 'LabelMap' (Context class per pixel) of a pascal-context .mat file."""
    return np.asarray(read_mat(path, 'LabelMap'))


def decode_normals(encoded: np.ndarray) -> np.ndarray:
    """float32 normals 2 v / 255 - 1 of an HxWx3 uint8 encoding (one table lookup)."""
    return cv2.LUT(encoded, _NORMALS_TABLE)


_NORMALS_TABLE = np.arange(256, dtype=np.float32) * 2 / 255 - 1


def ignore_where(normals: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """``normals`` (float32 HxWx3) with every channel of the ``invalid`` pixels set to 255.

    Two masked OpenCV passes: 4x faster than numpy's boolean assignment over HxWx3.
    """
    out = cv2.bitwise_and(normals, normals, mask=(~invalid).view(np.uint8))
    return cv2.add(out, (IGNORE, IGNORE, IGNORE, 0), dst=out, mask=invalid.view(np.uint8))


def load_normals(path: str, label_map: np.ndarray, valid_classes: np.ndarray) -> np.ndarray:
    """Unit-ish normals in [-1, 1]; pixels of non-NYU classes hold 255.

    A decoded component 2 v / 255 - 1 is never 0 for an integer v, so no vector has zero
    length (the reference's zero-length rule only ever hits its own zero-filled pixels).
    """
    normals = decode_normals(read_rgb(path))
    if label_map.shape != normals.shape[:2]:
        raise DatasetError(f'{path}: normals {normals.shape[:2]} and LabelMap '
                           f'{label_map.shape} differ in size', file=path)
    lookup = np.zeros(max(int(label_map.max()), int(valid_classes.max(initial=0))) + 1, bool)
    lookup[valid_classes] = True
    return ignore_where(normals, ~lookup[label_map])


def _field(record, name: str, path: str):
    names = record.dtype.names or ()
    if name not in names:
        raise DatasetError(f'{path}: PASCAL-Part struct has no field {name!r} (fields: '
                           f'{names})', file=path)
    return record[name]


def _struct_items(value) -> np.ndarray:
    """The records of a MATLAB struct array (empty for [] and empty structs)."""
    value = np.asarray(value)
    return value.ravel() if value.dtype.names else value.ravel()[:0]


def load_human_parts(path: str, shape) -> np.ndarray:
    """7-class human-parts map from a PASCAL-Part .mat; all 255 without a person with parts.

    Fields are read by name: anno.objects[i].{class_ind, parts[j].{part_name, mask}}.
    """
    anno = np.asarray(read_mat(path, 'anno')).ravel()[0]
    target = None
    for obj in _struct_items(_field(anno, 'objects', path)):
        class_ind = np.asarray(_field(obj, 'class_ind', path)).ravel()
        parts = _struct_items(_field(obj, 'parts', path))
        if class_ind.size == 0 or int(class_ind[0]) != PERSON_CLASS or parts.size == 0:
            continue
        if target is None:
            target = np.zeros(shape, dtype=np.uint8)
        for part in parts:
            name = str(np.asarray(_field(part, 'part_name', path)).ravel()[0])
            if name not in PART_TO_CLASS:
                raise DatasetError(f'{path}: unknown human part {name!r} '
                                   f'(known: {sorted(PART_TO_CLASS)})', file=path)
            mask = np.asarray(_field(part, 'mask', path)).astype(bool)
            if mask.shape != tuple(shape):
                raise DatasetError(f'{path}: part {name!r} mask is {mask.shape}, image is '
                                   f'{shape}', file=path)
            target[mask] = PART_TO_CLASS[name]
    return target if target is not None else np.full(shape, IGNORE, dtype=np.uint8)


def edges_from_label_map(label_map: np.ndarray) -> np.ndarray:
    """Binary (uint8 0/1) semantic boundaries: thin(|Laplacian(LabelMap)| > 0)."""
    laplacian = cv2.Laplacian(label_map.astype(np.float64), cv2.CV_64F)
    return thin(np.abs(laplacian) > 0).astype(np.uint8)


def _thinning_tables():
    """Which 8-neighbourhoods let the centre go, for each of the two subiterations.

    Neighbour k (bit k of the code) runs counter-clockwise from East: E, NE, N, NW, W, SW, S, SE.
    """
    codes = np.arange(256)
    x = [((codes >> k) & 1).astype(bool) for k in range(8)]
    x.append(x[0])  # the ring wraps: x[8] is E again
    odd = (0, 2, 4, 6)  # E, N, W, S
    # G1: exactly one 4-connected run of foreground around the centre (crossing number 1).
    crossing = sum((~x[i] & (x[i + 1] | x[i + 2])).astype(int) for i in odd)
    # G2: the centre is neither an end point nor interior.
    n1 = sum((x[i] | x[i + 1]).astype(int) for i in odd)
    n2 = sum((x[i + 1] | x[i + 2]).astype(int) for i in odd)
    g12 = (crossing == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    # G3 / G3': remove from the south-east side first, then from the north-west side.
    first = g12 & ~((x[1] | x[2] | ~x[7]) & x[0])
    second = g12 & ~((x[5] | x[6] | ~x[3]) & x[4])
    return first, second


_THIN_FIRST, _THIN_SECOND = _thinning_tables()
# (row, column) offsets of neighbours E, NE, N, NW, W, SW, S, SE.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def thin(mask: np.ndarray) -> np.ndarray:
    """Thin a binary mask to one-pixel-wide curves (the algorithm of ``skimage``'s ``thin``)."""
    skel = np.pad(np.asarray(mask, dtype=bool), 1)
    h, w = skel.shape
    while True:
        changed = False
        for table in (_THIN_FIRST, _THIN_SECOND):
            code = np.zeros((h - 2, w - 2), dtype=np.int64)
            for bit, (dy, dx) in enumerate(_NEIGHBOURS):
                code |= skel[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx].astype(np.int64) << bit
            remove = table[code] & skel[1:-1, 1:-1]
            if remove.any():
                skel[1:-1, 1:-1][remove] = False
                changed = True
        if not changed:
            return skel[1:-1, 1:-1]
