# Table 1 of the MTLoRA paper (Agiza et al., CVPR 2024) on PASCAL-MT: Swin-T (ImageNet-1k
# weights) at 448 px, the four tasks, the paper's recipe (300 epochs), for GPU machines.
# Δm is against the paper's single-task full fine-tuning references; set
# references = 'single-task' to train and use your own instead (four more Swin-T runs).
#
#   adapterkit compare configs/compare/pascal_table1.py --work-dir work_dirs/table1
#
# Needs data/PASCAL_MT (docs/data.md) and checkpoints/swin_tiny_patch4_window7_224.pth
# (Microsoft's or timm's release, loaded from disk). Rows of the table that adapterkit does
# not implement (VPT, Compacter, Polyhistor) are left out.
base = '../full/full_swin-t_pascal-448.py'

members = dict(
    full='../full/full_swin-t_pascal-448.py',
    decoder_only='../decoder_only/decoder-only_swin-t_pascal-448.py',
    bitfit='../bitfit/bitfit_swin-t_pascal-448.py',
    adapter='../adapter/adapter-houlsby_swin-t_pascal-448.py',
    # The paper does not give the rank of its shared-LoRA baseline; 16 matches MTLoRA r16's
    # shared rank.
    lora='../lora/lora_swin-t_r16_pascal-448.py',
    mtlora_r16='../mtlora/mtlora_swin-t_r16_pascal-448.py',
    mtlora_r32='../mtlora/mtlora_swin-t_r32_pascal-448.py',
    mtlora_r64='../mtlora/mtlora_swin-t_r64_pascal-448.py',
)

seeds = [0]
data = dict(root='data/PASCAL_MT')
references = dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97)
