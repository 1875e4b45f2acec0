# LoRA as in lora_swin-t_r4_pascal-448.py with rank 16: adds 70,656 x 16 = 1,130,496
# parameters; 3,077,120 trainable with the four HRNet heads.
_base_ = ['./lora_swin-t_r4_pascal-448.py']
model = dict(adapter=dict(rank=16))
