# MTL full fine-tuning of Swin-T on PASCAL-MT at 448 with DeepSpeed ZeRO-2: mmengine's
# DeepSpeedStrategy on its FlexibleRunner; 29,464,442 trainable, as in full/. Needs CUDA GPUs
# and `pip install deepspeed`.
#   torchrun --nproc_per_node 8 -m adapterkit train \
#       configs/distributed/full_swin-t_pascal-448_deepspeed.py --launcher pytorch
# Precision and clipping belong to DeepSpeed here (bf16, gradient_clipping), not to --amp.
# train_dataloader.batch_size is per process. See docs/distributed.md.
_base_ = ['../full/full_swin-t_pascal-448.py']

strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=2, overlap_comm=True, contiguous_gradients=True,
                           reduce_bucket_size=int(5e8), allgather_bucket_size=int(5e8)),
    bf16=dict(enabled=True),
    gradient_clipping=5.0,  # the paper's grad-norm clip
)

# DeepSpeed's engine steps the optimizer; the paper's AdamW and decay rules stay.
optim_wrapper = dict(
    _delete_=True,
    type='DeepSpeedOptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
