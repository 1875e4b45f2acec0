# Table 1 of the MTLoRA paper (Agiza et al., CVPR 2024) on PASCAL-MT: Swin-T (ImageNet-1k
# weights) at 448 px, the four tasks, the paper's recipe (300 epochs), for GPU machines.
# Δm is against the paper's single-task full fine-tuning references; set
# references = 'single-task' to train and use your own instead (four more Swin-T runs).
#
#   adapterkit compare configs/compare/pascal_table1.py --work-dir work_dirs/table1
#
# Needs data/PASCAL_MT (docs/data.md) and checkpoints/swin_tiny_patch4_window7_224.pth
# (Microsoft's or timm's release, loaded from disk). The single-task PEFT rows
# (BitFit, relative bias, VPT, Compacter, ...) were trained one copy per task in that benchmark
# (Polyhistor's, whose counts show it: docs/strategies.md), so their members are PerTask
# configs. Published numbers below: MTLoRA (Agiza et al., CVPR 2024) Table 1, which takes
# these baselines from Polyhistor (Liu et al., NeurIPS 2022), as copied in the project's
# PASCAL-MT reference notes; each one's Δm follows from its four metrics and the references.
base = '../full/full_swin-t_pascal-448.py'

members = dict(
    full='../full/full_swin-t_pascal-448.py',
    decoder_only='../decoder_only/decoder-only_swin-t_pascal-448.py',
    bitfit='../bitfit/bitfit_swin-t_pascal-448.py',
    adapter='../adapter/adapter-houlsby_swin-t_pascal-448.py',
    # The paper does not give the rank of its shared-LoRA baseline; 16 matches MTLoRA r16's
    # shared rank.
    lora='../lora/lora_swin-t_r16_pascal-448.py',
    # Table 1's BitFit row (2.85M: per task, biases and position-bias tables; ours 2.25M, the
    # benchmark's decoders are ~0.60M larger). Published: semseg 68.57, human_parts 55.99,
    # sal 60.64, normals 19.42, Δm -4.60.
    bitfit_per_task='../pertask/pertask-bitfit_swin-t_pascal-448.py',
    # Published numbers of the relative-bias and VPT-shallow rows are left out: they could
    # not be read from the paper here (the relative-bias row as remembered does not even
    # reproduce its Δm), and copies from memory are not references.
    relative_bias='../relative_bias/relative-bias_swin-t_pascal-448.py',
    vpt_shallow='../vpt/vpt-shallow_swin-t_pascal-448.py',
    # Published: semseg 64.35, human_parts 52.54, sal 58.15, normals 21.07, Δm -10.85, 3.43M
    # trainable (ours 2.83M: the same 0.60M of decoders).
    vpt_deep='../vpt/vpt-deep_swin-t_pascal-448.py',
    # Published: semseg 68.08, human_parts 56.41, sal 60.08, normals 19.22, Δm -4.55, 2.78M
    # trainable (ours 2.08M, docs/strategies.md says why).
    compacter='../pertask/pertask-compacter_swin-t_pascal-448.py',
    # Published numbers of the Compacter++ and low-rank adapter rows are left out: they could
    # not be read from the paper here, and copies from memory are not references.
    compacter_plusplus='../pertask/pertask-compacter-plusplus_swin-t_pascal-448.py',
    low_rank_adapter='../pertask/pertask-low-rank-adapter_swin-t_r1_pascal-448.py',
    # Published 72.77M trainable (ours 72.88M: the authors' per-block variant with sizes
    # chosen here, docs/strategies.md, "Hypernetwork adapters"). Its four metrics could not
    # be read from the paper here and are left out.
    hyperformer='../hyperformer/hyperformer_swin-t_pascal-448.py',
    # Published: semseg 70.87, human_parts 59.54, sal 65.47, normals 17.47, Δm +2.34, 8.96M
    # trainable (ours 4.07M: the authors' structure, their sizes are not public; same
    # section).
    polyhistor='../polyhistor/polyhistor_swin-t_r8_pascal-448.py',
    # Polyhistor-Lite's published row could not be read here (Polyhistor's own Table 1).
    polyhistor_lite='../polyhistor/polyhistor-lite_swin-t_r8_pascal-448.py',
    mtlora_r16='../mtlora/mtlora_swin-t_r16_pascal-448.py',
    mtlora_r32='../mtlora/mtlora_swin-t_r32_pascal-448.py',
    mtlora_r64='../mtlora/mtlora_swin-t_r64_pascal-448.py',
    # After the table: TADFormer (Baek et al., CVPR 2025) with the paper's dynamic task
    # filter at rank 64, from the plugin plugins/adapterkit-tadformer (installed by `make
    # install`; without it this suite does not load).
    tadformer_r64='tadformer::tadformer-dynamic_swin-t_r64_pascal-448.py',
)

seeds = [0]
data = dict(root='data/PASCAL_MT')
references = dict(semseg=67.21, human_parts=61.93, sal=62.35, normals=17.97)

# The paper's Table 1 rows for these members (Swin-T, PASCAL-MT), shown beside the measured
# numbers in results.md and published.png. Full fine-tuning gives only its Δm and size
# here: its four metrics, as transcribed, did not reproduce its Δm (+2.23) and are left out
# until checked against the paper; every other row reproduces its Δm to the rounding
# (tests/engine/test_compare.py).
published = dict(
    full=dict(delta_m=2.23, trainable=30.06e6),
    decoder_only=dict(semseg=65.09, human_parts=53.48, sal=57.46, normals=20.69,
                      delta_m=-9.95, trainable=1.94e6),
    # Table 1's BitFit is per task (its count shows it: docs/strategies.md)
    bitfit_per_task=dict(semseg=68.57, human_parts=55.99, sal=60.64, normals=19.42,
                         delta_m=-4.60, trainable=2.85e6),
    vpt_deep=dict(semseg=64.35, human_parts=52.54, sal=58.15, normals=21.07, delta_m=-10.85,
                  trainable=3.43e6),
    compacter=dict(semseg=68.08, human_parts=56.41, sal=60.08, normals=19.22, delta_m=-4.55,
                   trainable=2.78e6),
    hyperformer=dict(trainable=72.77e6),
    polyhistor=dict(semseg=70.87, human_parts=59.54, sal=65.47, normals=17.47, delta_m=2.34,
                    trainable=8.96e6),
    adapter=dict(semseg=69.21, human_parts=57.38, sal=61.28, normals=18.83, delta_m=-2.71,
                 trainable=11.24e6),
    lora=dict(semseg=70.12, human_parts=57.73, sal=61.90, normals=18.96, delta_m=-2.17,
              trainable=2.87e6),
    mtlora_r16=dict(semseg=68.19, human_parts=58.99, sal=64.48, normals=17.03, delta_m=1.35,
                    trainable=3.01e6),
    mtlora_r32=dict(semseg=67.74, human_parts=59.46, sal=64.90, normals=16.59, delta_m=2.16,
                    trainable=4.14e6),
    mtlora_r64=dict(semseg=67.90, human_parts=59.84, sal=65.40, normals=16.60, delta_m=2.55,
                    trainable=6.08e6),
    # TADFormer's paper on the same setting, as issue 20 quotes it: +4.24 at 7.38M (its four
    # metrics were not available here, so they are left out)
    tadformer_r64=dict(delta_m=4.24, trainable=7.38e6),
)
compare_to = 'lora'  # paired differences per seed (with several seeds: --seeds 3)
