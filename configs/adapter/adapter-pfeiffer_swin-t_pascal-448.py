# Bottleneck adapters in the Pfeiffer placement: after the MLP of every Swin-T block only,
# bottleneck width = block width // 16. Adds 274,260 parameters; 2,220,884 trainable with
# the four HRNet heads.
_base_ = ['./adapter-houlsby_swin-t_pascal-448.py']
model = dict(adapter=dict(placement='pfeiffer'))
