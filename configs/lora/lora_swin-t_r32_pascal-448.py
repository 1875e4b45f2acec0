# LoRA as in lora_swin-t_r4_pascal-448.py with rank 32: adds 70,656 x 32 = 2,260,992
# parameters; 4,207,616 trainable with the four HRNet heads.
_base_ = ['./lora_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=32))
