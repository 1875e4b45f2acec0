# MTLoRA's comparison on NYUD-MT (semseg, depth, normals, edge; the reference code's `--nyud`
# task set): Swin-T (ImageNet-1k weights) at 448 px with the reference's NYUD protocol
# (configs/_base_/datasets/nyud_mt-448.py) and the MTLoRA recipe (300 epochs), for GPU
# machines.
#
#   adapterkit compare configs/compare/nyud_mt.py --work-dir work_dirs/nyud_mt
#
# Needs data/NYUD_MT (docs/data.md) and checkpoints/swin_tiny_patch4_window7_224.pth.
# Δm is against single-task full fine-tuning trained here under the same protocol (four more
# Swin-T runs): no published single-task Swin-T references for this protocol could be
# verified (docs/data.md, "NYUD-MT references").
base = '../full/full_swin-t_nyud-448.py'

members = dict(
    full='../full/full_swin-t_nyud-448.py',
    decoder_only='../decoder_only/decoder-only_swin-t_nyud-448.py',
    lora='../lora/lora_swin-t_r16_nyud-448.py',
    mtlora_r16='../mtlora/mtlora_swin-t_r16_nyud-448.py',
    mtlora_r64='../mtlora/mtlora_swin-t_r64_nyud-448.py',
    mtlora_plus_r16='../mtlora/mtlora-plus_swin-t_r16_nyud-448.py',
)

seeds = [0]
data = dict(root='data/NYUD_MT')
references = 'single-task'
