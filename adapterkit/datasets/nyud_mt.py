"""NYUD-v2 multi-task dataset (NYUD-MT) read from the ATRC / InvPT packaging.

Layout under ``data_root`` (795 train, 654 val images of 480x640)::

    images/<id>.png              RGB image
    segmentation/<id>.png        40 NYU classes as 1..40; 0 = unlabelled
    depth/<id>.npy               float depth in metres; 0 = no measurement
    normals/<id>.png             RGB, n = 2 * v / 255 - 1
    edge/<id>.png                semantic boundaries, v / 255
    gt_sets/<split>.txt          one id per line ('train', 'val')

Only the files of the selected tasks are read; all of them are checked when the data set is
built (``files.check_file``), like PASCAL-MT's.

Decisions worth knowing:

* Segmentation: 0 (unlabelled) becomes 255 (ignored) and the classes 1..40 become 0..39, as
  every NYUD multi-task loader does ("we ignore the background class as other related
  works"). A value above 40 is an error naming the file.
* Depth keeps 0 for "no measurement": the depth task ignores pixels <= 0.
* Normals: every pixel holds a vector. 2 v / 255 - 1 is never the zero vector, so the
  reference's rule (zero length = ignored) ignores none of NYUD's normals either.
* Edges: v / 255 in the reference, on maps that hold 0 and 255; here v > 127 is an edge, so
  the target is binary (0/1) like PASCAL-MT's.
"""
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from ..errors import ConfigError, MissingFileError
from ..registry import DATASETS, TASKS
from .files import DatasetError, check_files, read_label_png, read_npy, read_rgb
from .pascal_mt import IGNORE, decode_normals, read_split

NYUD_TASKS = ('semseg', 'depth', 'normals', 'edge')
NYUD_CLASSES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
    'picture', 'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror',
    'floor mat', 'clothes', 'ceiling', 'books', 'refridgerator', 'television', 'paper', 'towel',
    'shower curtain', 'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp',
    'bathtub', 'bag', 'otherstructure', 'otherfurniture', 'otherprop')

# task -> (info key, file pattern)
_TASK_FILES = {
    'semseg': ('semseg_path', 'segmentation/{}.png'),
    'depth': ('depth_path', 'depth/{}.npy'),
    'normals': ('normals_path', 'normals/{}.png'),
    'edge': ('edge_path', 'edge/{}.png'),
}


@DATASETS.register_module()
class NYUDMTDataset(BaseDataset):
    """NYUD-MT: semseg (40 classes), depth, normals and edge on NYUD-v2 images.

    Each item, before the pipeline, is ``{'img': HxWx3 uint8 RGB, 'gt': {task: array},
    'img_id', 'ori_shape', 'img_shape'}`` with uint8 semseg (0..39, 255 = ignore) and edge
    (0/1), float32 HxW depth (0 = invalid) and float32 HxWx3 normals.

    Args:
        data_root: folder holding the NYUD-MT layout.
        split: name of a file in ``gt_sets`` ('train' or 'val').
        tasks: subset of ``NYUD_TASKS``; only their files are needed and loaded.
        pipeline: transforms applied to each loaded item.
        check_files: check every needed file's header and length when the data set is built.
        **kwargs: the other ``mmengine.dataset.BaseDataset`` arguments.
    """

    METAINFO = dict(semseg_classes=NYUD_CLASSES)

    def __init__(self, data_root: str, split: str = 'train',
                 tasks: Sequence[str] = NYUD_TASKS, pipeline: Sequence = (),
                 check_files: bool = True, **kwargs):
        self.tasks = check_tasks(tasks)
        self.split = split
        self._check_files = check_files
        metainfo = dict(kwargs.pop('metainfo', None) or {}, tasks=self.tasks)
        super().__init__(data_root=data_root, pipeline=list(pipeline), metainfo=metainfo,
                         **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the split file and the paths of every needed file, checking them all."""
        ids = read_split(self.data_root, osp.join('gt_sets', f'{self.split}.txt'), 'NYUD-MT')
        data_list, missing = [], []
        for img_id in ids:
            info = dict(img_id=img_id, img_path=self._path('images/{}.png', img_id))
            for task in self.tasks:
                key, pattern = _TASK_FILES[task]
                info[key] = self._path(pattern, img_id)
            missing += [p for k, p in info.items() if k.endswith('_path') and not osp.isfile(p)]
            data_list.append(info)
        if missing:
            raise MissingFileError(
                f'NYUD-MT: {len(missing)} file(s) of split {self.split!r} with tasks '
                f'{list(self.tasks)} are missing, e.g. {missing[0]}', file=missing[0])
        if self._check_files:
            check_files((p for info in data_list for k, p in info.items()
                         if k.endswith('_path')), f'NYUD-MT split {self.split!r}')
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
            gt['semseg'] = load_segmentation(info['semseg_path'])
        if 'depth' in self.tasks:
            gt['depth'] = load_depth(info['depth_path'])
        if 'normals' in self.tasks:
            gt['normals'] = decode_normals(read_rgb(info['normals_path']))
        if 'edge' in self.tasks:
            gt['edge'] = (read_label_png(info['edge_path']) > 127).view(np.uint8)
        for task, target in gt.items():
            if target.shape[:2] != shape:
                raise DatasetError(f'NYUD-MT {task} target of {info["img_id"]!r} is '
                                   f'{target.shape[:2]}, image is {shape}', task=task)
        return dict(img=img, gt=gt, img_id=info['img_id'], ori_shape=shape, img_shape=shape)

    def _path(self, pattern: str, img_id: str) -> str:
        return osp.join(self.data_root, pattern.format(img_id))


def check_tasks(tasks: Sequence[str]) -> tuple:
    """The tasks as a tuple, or one error naming the unknown task and the known ones."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not tasks:
        raise ConfigError(f'NYUDMTDataset needs at least one task of {list(NYUD_TASKS)}',
                          key='tasks')
    for task in tasks:
        if task not in NYUD_TASKS:
            known = 'registered' if TASKS.get(task) is not None else 'unknown'
            raise ConfigError(f'{known} task {task!r} is not provided by NYUD-MT, which '
                              f'provides {list(NYUD_TASKS)}', task=task)
    return tasks


def load_segmentation(path: str) -> np.ndarray:
    """Classes 1..40 as 0..39; 0 (unlabelled) as 255."""
    label = read_label_png(path)
    if label.max(initial=0) > len(NYUD_CLASSES):
        raise DatasetError(f'{path}: label {int(label.max())} is above the '
                           f'{len(NYUD_CLASSES)} NYUD classes', file=path)
    return np.where(label == 0, IGNORE, label - 1).astype(np.uint8)


def load_depth(path: str) -> np.ndarray:
    """Depth in metres as float32 HxW; 0 (or a negative or non-finite value) is invalid."""
    depth = read_npy(path)
    depth = depth[..., 0] if depth.ndim == 3 and depth.shape[2] == 1 else depth
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise DatasetError(f'{path}: expected an HxW depth map, got {depth.dtype} '
                           f'{depth.shape}', file=path)
    depth = depth.astype(np.float32)
    depth[~(np.isfinite(depth) & (depth > 0))] = 0
    return depth
