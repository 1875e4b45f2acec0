"""What the step-time benchmarks share: a config's model with random weights, one training
step of it, and timing several steps in turn so that all see the same machine load."""
import os.path as osp
import statistics
import time
from typing import Callable, Dict, Optional, Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def model_of(config: str, img: int, tasks: Optional[Sequence[str]] = None):
    """The model of ``config`` (a path relative to the repository, an absolute one or
    ``PROVIDER::path``) at ``img`` px with random weights, in training mode; ``tasks``
    keeps only those of its tasks."""
    from adapterkit.config import build_model, load_config
    if '::' not in config and not osp.isabs(config):
        config = osp.join(REPO, config)
    cfg = load_config(config)
    cfg.model.backbone.pretrained = None
    cfg.model.backbone.img_size = img
    if tasks is not None:
        cfg.model.tasks = {task: cfg.model.tasks[task] for task in tasks}
    return build_model(cfg).train()


def train_step(model, images: torch.Tensor, img: int) -> Callable[[], None]:
    """One training step of ``model`` on ``images`` with random targets: forward, the
    weighted task losses, backward and an AdamW step, on the images' device (which ``model``
    is moved to); on a GPU the step waits for its kernels, so that it can be timed."""
    from adapterkit.engine.bench import random_targets
    model.to(images.device)
    targets = random_targets(model.tasks, len(images), img, images.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        logits = model(images, mode='tensor')
        loss = sum(task.loss_weight * task.loss(logits[name], targets[name])
                   for name, task in model.tasks.items())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if images.is_cuda:
            torch.cuda.synchronize()
    return step


def alternate(steps: Dict[str, Callable[[], None]], iters: int):
    """Median seconds per step of each of ``steps`` (and every time), run in turn after one
    warm-up each."""
    times = {name: [] for name in steps}
    for step in steps.values():
        step()
    for _ in range(iters):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: round(statistics.median(t), 4) for name, t in times.items()}, times
