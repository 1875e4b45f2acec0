_base_ = ['../default_runtime.py']

# The MTLoRA paper's recipe: AdamW, base lr 5e-4 scaled by batch/512 (32 -> 3.125e-5),
# 20 warm-up epochs from lr/1000, then cosine per iteration to lr/100; 300 epochs;
# grad-norm clip 5.0; no weight decay on 1-D parameters, biases and position-bias tables.
base_lr = 5e-4 * 32 / 512

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=base_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        # per-task copies of biases (PerTask: a 2-D stack of the 1-D bias) as the biases
        custom_keys={'relative_position_bias_table': dict(decay_mult=0.0),
                     'pertask_bias': dict(decay_mult=0.0)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=base_lr / 100, by_epoch=True, begin=20, end=300,
         T_max=280, convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(checkpoint=dict(interval=20, max_keep_ckpts=2,
                                     save_last=True, save_best='delta_m', rule='greater'))
# TensorBoard where installed (pip install 'adapterkit[tensorboard]'): engine/visualization.py
visualizer = dict(tensorboard='auto')
