"""Launching on mmengine's distributed machinery: DDP through the Runner, FSDP and DeepSpeed
through the FlexibleRunner's strategies, on GPUs (NCCL) or on CPUs (gloo).

On GPUs nothing here changes mmengine's behaviour. On CPUs mmengine assumes a GPU in two
places, and this module bridges exactly those: its ``init_dist`` pins a CUDA device in every
process, and its model wrappers pass a GPU index to DDP/FSDP.
"""
import datetime
import gc
import importlib.util

import torch
import torch.distributed as dist
from mmengine.dist import is_distributed
from mmengine.hooks import Hook

from ..errors import LaunchError
from ..registry import FUNCTIONS, HOOKS


def strategy_type(cfg) -> str:
    """The FlexibleRunner strategy a config asks for ('' for the plain Runner)."""
    strategy = cfg.get('strategy')
    if strategy is None:
        return ''
    kind = strategy.get('type', '')
    return kind if isinstance(kind, str) else kind.__name__


def build_runner(cfg):
    """mmengine's FlexibleRunner when the config has a ``strategy`` (FSDP, DeepSpeed, ...),
    its Runner otherwise (single process or DDP)."""
    if strategy_type(cfg):
        from mmengine.runner import FlexibleRunner
        return FlexibleRunner.from_cfg(cfg)
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg)


def prepare_launch(cfg, launcher: str) -> None:
    """Set ``cfg.launcher`` and check the config can run here; on CPUs, adapt it to gloo.

    Raises LaunchError (one line) for a strategy this machine cannot run.
    """
    cfg.launcher = launcher
    strategy = strategy_type(cfg)
    if strategy == 'DeepSpeedStrategy' and importlib.util.find_spec('deepspeed') is None:
        raise LaunchError('DeepSpeedStrategy needs the deepspeed package and CUDA GPUs: '
                          'pip install deepspeed')
    if strategy in ('FSDPStrategy', 'DeepSpeedStrategy') and launcher == 'none':
        raise LaunchError(f'{strategy} shards the model across processes: start them with '
                          'torchrun and pass --launcher pytorch')
    if strategy == 'FSDPStrategy':
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='FSDPGradClipHook')]
    if launcher == 'none' or torch.cuda.is_available():
        return  # mmengine's own path: one GPU per process, NCCL unless dist_cfg says otherwise
    _prepare_cpu(cfg, launcher, strategy)


def end_launch() -> None:
    """Tear down the process group after a run, whoever started it (call it once the
    command's Runner is dropped). The barrier first: a rank that tears down while another
    still finishes its last collective (FSDP's state-dict gathering for the final
    checkpoint) aborts under gloo.

    ``destroy_process_group`` only unregisters the groups: a group lives on, with its gloo
    threads, until its last reference goes, and the wrapped model (DDP, FSDP) holds it in
    reference cycles that only the garbage collector frees. Left to the collection at
    interpreter exit, those threads meet a finalizing interpreter, and a thread that then
    touches a Python object is unwound through C++ code that may not throw: "terminate
    called without an active exception". Collecting here joins them while Python is whole.
    """
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def _prepare_cpu(cfg, launcher: str, strategy: str) -> None:
    if launcher != 'pytorch':
        raise LaunchError(f'--launcher {launcher} needs CUDA GPUs; on CPUs start the processes '
                          'with torchrun and pass --launcher pytorch')
    if strategy == 'DeepSpeedStrategy':
        raise LaunchError('DeepSpeedStrategy needs CUDA GPUs')
    if cfg.get('sync_bn') or (cfg.get('strategy') or {}).get('sync_bn'):
        raise LaunchError("sync_bn needs CUDA GPUs (torch's SyncBatchNorm has no CPU kernel); "
                          'drop it with --cfg-options sync_bn=None')

    dist_cfg = _section(_section(cfg, 'env_cfg', {}), 'dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'  # NCCL only talks between GPUs
    if not is_distributed():
        # mmengine's init_dist calls torch.cuda.set_device first; the Runner and the
        # strategies skip it when they find the process group already started.
        timeout = dist_cfg.get('timeout')
        dist.init_process_group(
            backend=dist_cfg['backend'],
            timeout=datetime.timedelta(seconds=timeout) if timeout else None)

    # The wrappers otherwise get device_ids=[LOCAL_RANK], which only a GPU module accepts.
    if strategy == 'FSDPStrategy':
        _section(cfg.strategy, 'model_wrapper', {}).setdefault('device_id', 'cpu')
    elif strategy == 'DDPStrategy':
        wrapper = _section(cfg.strategy, 'model_wrapper', dict(broadcast_buffers=False))
        wrapper.setdefault('device_ids', None)
    else:
        wrapper = _section(cfg, 'model_wrapper_cfg', dict(
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper.setdefault('device_ids', None)


def _section(parent, key: str, default: dict):
    """``parent[key]``, set to ``default`` first when missing. (A Config stores a copy of
    what it is given, so ``setdefault``'s answer would not be the stored section.)"""
    if parent.get(key) is None:
        parent[key] = default
    return parent[key]


@FUNCTIONS.register_module()
def swin_block_wrap_policy(module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: one FSDP unit per Swin block, the rest in the root unit.

    A unit's parameters are gathered when its own ``forward`` runs. SwinBackbone calls a
    stage's merge and blocks directly, never the stage, so units stop at the blocks; a
    size-based policy could pick a stage and leave its merge sharded.
    """
    from timm.models.swin_transformer import SwinTransformerBlock
    return recurse or isinstance(module, SwinTransformerBlock)


@HOOKS.register_module()
class FSDPGradClipHook(Hook):
    """Clip gradients by their global norm under FSDP (``prepare_launch`` adds this hook to
    every FSDPStrategy run).

    mmengine's OptimWrapper clips with ``torch.nn.utils.clip_grad_norm_``, which on FSDP's
    sharded gradients measures this rank's shard only, so each rank would scale its shard
    by a different factor. FSDP's own ``clip_grad_norm_`` reduces the norm over ranks first.
    """

    def before_train(self, runner):
        from torch.distributed.fsdp import FullyShardedDataParallel
        model, optim_wrapper = runner.model, runner.optim_wrapper
        if (isinstance(model, FullyShardedDataParallel)
                and getattr(optim_wrapper, 'grad_name', None) == 'grad_norm'):
            optim_wrapper.clip_func = lambda params, **kwargs: model.clip_grad_norm_(**kwargs)
