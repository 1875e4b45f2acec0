# MTL full fine-tuning of Swin-T on PASCAL-MT at 448, sharded with FSDP: mmengine's
# FSDPStrategy on its FlexibleRunner (`adapterkit train` takes that runner whenever a config
# has a `strategy`). Parameters, gradients and optimizer state are split over the ranks;
# gradients are clipped by their global norm (FSDPGradClipHook, added by the CLI);
# 29,464,442 trainable, as in full/.
#   torchrun --nproc_per_node 8 -m adapterkit train \
#       configs/distributed/full_swin-t_pascal-448_fsdp.py --launcher pytorch --amp
# train_dataloader.batch_size is per process. See docs/distributed.md.
_base_ = ['../full/full_swin-t_pascal-448.py']

strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # One unit per Swin block; patch embedding, merges and heads stay in the root unit.
        auto_wrap_policy=dict(type='adapterkit.swin_block_wrap_policy'),
        # Frozen and trainable parameters may share a unit (adapter strategies).
        use_orig_params=True),
    # Checkpoints hold the whole model, written by rank 0; they load without FSDP.
    state_dict_cfg='full')
