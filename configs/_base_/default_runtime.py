default_scope = 'adapterkit'

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook, written atomically, never with nan weights (engine/hooks.py)
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

vis_backends = [dict(type='LocalVisBackend')]
# TensorBoard (losses, lr, metrics, Δm, a few validation panels): one line in a config,
# visualizer = dict(tensorboard=True), needs `pip install 'adapterkit[tensorboard]'`;
# 'auto' uses it where installed (the paper-size schedule does). docs/user_guide.md.
visualizer = dict(type='MultiTaskVisualizer', vis_backends=vis_backends, tensorboard=False)
log_processor = dict(window_size=20, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
# Latest validation/test metrics as JSON in the work dir (what reports and scripts read).
# SyncBuffersHook: in distributed runs, average the BN running statistics of the ranks at the
# end of each training epoch and before validation (a no-op in one process).
# FiniteLossHook: stop at the first nan/inf loss, naming the iteration and the task.
# LogPredictionsHook: panels (image | ground truth | prediction) of the first validation
# images to the visualizer.
custom_hooks = [dict(type='SyncBuffersHook'), dict(type='SaveMetricsHook'),
                dict(type='FiniteLossHook'), dict(type='LogPredictionsHook', num_images=2)]
