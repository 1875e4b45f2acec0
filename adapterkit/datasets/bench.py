"""``adapterkit bench-data``: throughput of a config's train data pipeline, in images per second.

The train data set of the config (loader, transforms and packing, exactly as training builds
them) is read through a torch DataLoader with ``workers`` worker processes (0: in this
process), over the first ``images`` items, ``repeats`` times after one untimed pass: the first
pass fills the data set's caches (human-parts maps) and is reported on its own. Reported per
pass: wall-clock images per second and images per CPU-second of the processes that did the
work (this one with 0 workers, the workers otherwise), which is what a core delivers when it
is not shared. OpenCV runs single-threaded, as in training (``env_cfg.mp_cfg``).
"""
import resource
import statistics
import time
from typing import List, Optional

import cv2
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from ..config import load_config
from ..errors import ConfigError
from ..registry import DATASETS


def bench_data(config: str, workers: int = 0, images: int = 64, repeats: int = 3,
               batch: Optional[int] = None, cfg_options: Optional[dict] = None) -> dict:
    """Time the train pipeline of ``config``; the result is described in the module doc."""
    if workers < 0 or images < 1 or repeats < 1:
        raise ConfigError(f'bench-data: need workers >= 0, images >= 1 and repeats >= 1, got '
                          f'{workers}, {images} and {repeats}', option='workers')
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'adapterkit'))
    loader_cfg = cfg.train_dataloader
    dataset = DATASETS.build(loader_cfg.dataset)
    images = min(images, len(dataset))
    batch = batch or min(int(loader_cfg.get('batch_size', 1)), images)
    cv2.setNumThreads(0)  # what env_cfg.mp_cfg.opencv_num_threads=0 does in training
    subset = torch.utils.data.Subset(dataset, range(images))
    first = _timed_pass(subset, workers, batch)
    passes = [_timed_pass(subset, workers, batch) for _ in range(repeats)]
    return dict(config=config, dataset=type(dataset).__name__, tasks=list(dataset.tasks),
                transforms=[type(t).__name__ for t in dataset.pipeline.transforms],
                images=images, workers=workers, batch=batch, first_pass=first, passes=passes,
                img_s=statistics.median(p['img_s'] for p in passes),
                img_s_per_cpu=statistics.median(p['img_s_per_cpu'] for p in passes))


def _timed_pass(subset, workers: int, batch: int) -> dict:
    loader = torch.utils.data.DataLoader(subset, batch_size=batch, num_workers=workers,
                                         collate_fn=pseudo_collate, shuffle=False)
    cpu = _cpu_seconds(workers)
    start = time.perf_counter()
    count = sum(len(b['inputs']) for b in loader)  # the workers are reaped when it ends
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(workers) - cpu
    return dict(images=count, seconds=round(wall, 3), img_s=round(count / wall, 1),
                img_s_per_cpu=round(count / max(cpu, 1e-9), 1))


def _cpu_seconds(workers: int) -> float:
    """CPU time of the processes doing the work: this one, or its reaped worker children."""
    who = resource.RUSAGE_CHILDREN if workers else resource.RUSAGE_SELF
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def format_data_report(result: dict) -> str:
    lines: List[str] = [
        f"{result['config']}",
        f"  {result['dataset']} {result['tasks']}: {' -> '.join(result['transforms'])}",
        f"  {result['images']} images, {result['workers']} worker(s), batch {result['batch']}",
        f"  first pass (caches cold): {result['first_pass']['img_s']} img/s, "
        f"{result['first_pass']['img_s_per_cpu']} img/s per CPU-second",
    ]
    for i, p in enumerate(result['passes'], 1):
        lines.append(f"  pass {i}: {p['img_s']} img/s, {p['img_s_per_cpu']} img/s per "
                     f"CPU-second ({p['seconds']} s)")
    lines.append(f"  median: {result['img_s']} img/s, {result['img_s_per_cpu']} img/s per "
                 f"CPU-second")
    return '\n'.join(lines)
