# Compacter++ (Mahabadi et al., NeurIPS 2021) on Swin-T at 448, one copy shared by the four
# tasks: Compacter after the MLP of every block only (12 adapters), bottleneck = width / 4,
# n = 4, rank 1, one rule tensor for the whole backbone. Adds 16,624 parameters: per adapter
# of width d, (2r + 1)(d + d/4) with r = 1, summed over the 12 adapters, + n^3 = 64;
# 1,963,248 trainable with the four HRNet heads. Not mergeable (nonlinear). Table 1's row:
# configs/pertask/pertask-compacter-plusplus_swin-t_pascal-448.py.
_base_ = ['./compacter_swin-t_pascal-448.py']
model = dict(adapter=dict(_delete_=True, type='CompacterPlusPlus', placement='pfeiffer',
                          reduction_factor=4, phm_dim=4, rank=1, share_rule='model'))
