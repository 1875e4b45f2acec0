# Quickstart, MTLoRA: shared LoRA in every block, task LoRA in the last block of each stage
# (one feature stream per task from there); norms, patch embedding, position-bias tables,
# PatchMerging reductions and the heads train; 1,853,982 trainable.
_base_ = ['./full_swin-mini_synthetic-128.py']
model = dict(adapter=dict(type='MTLoRA', rank=8, task_rank=4, scale=4.0, dropout=0.05))
