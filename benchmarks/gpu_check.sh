#!/usr/bin/env bash
# The GPU check of issues 7 and 14, prepared for a lent H100/H200: about 10 minutes, one GPU,
# no network.
#
#   bash benchmarks/gpu_check.sh          (uses .venv/bin/python when present, else python)
#
# Prints one JSON line per run, then one summary line with the issue's targets; everything is
# also kept in $OUT/gpu_check.jsonl, and each run's log in $OUT/<run>.log ($OUT: the device
# tool's output folder, else ./gpu_check_out).
#
# 1. The real CLI on CUDA, a few iterations of the MTLoRA quickstart on synthetic data:
#    `adapterkit train --amp` under torchrun (mmengine's NCCL launch, DDP, SyncBN heads),
#    and the same under mmengine's FSDPStrategy.
# 2. `adapterkit bench --amp` figures for Swin-T at 448 (random weights and data), in the bf16
#    autocast that `--amp` gives training:
#    - training steps (forward, losses, backward, AdamW), batch 32: full fine-tuning,
#      LoRA r4 (the paper's LoRA baseline), MTLoRA r64; throughput and peak memory;
#      then full fine-tuning with channels-last weights, with activation checkpointing, and
#      MTLoRA r64 with torch.compile, to see what each switch is worth here;
#    - inference of the plain Swin-T multi-task model (the full FT config) and of merged
#      LoRA / MTLoRA: latency at batch 1, throughput at batch 32.
# 3. Issue 14: a PerTask(LoRA r4) training step (four task streams in one batched forward)
#    against four single-task LoRA r4 steps, float32, batch 2 (the CPU figure's) and 8.
# Targets: MTLoRA r64 training >= 1,000 img/s; merged MTLoRA latency within 15% of plain;
# the per-task step at most 0.8 of the four single-task steps.
# Record the figures in docs/performance.md ("GPU (H200)") with the date and the machine.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
[ -x "$PY" ] || PY=python
OUT=${OUT:-gpu_check_out}
BATCH=${BATCH:-32}
IMG=${IMG:-448}
mkdir -p "$OUT"
RESULTS="$OUT/gpu_check.jsonl"
: > "$RESULTS"
export OMP_NUM_THREADS=4
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # adapterkit from this checkout, installed or not

FULL=configs/full/full_swin-t_pascal-448.py
LORA=configs/lora/lora_swin-t_r4_pascal-448.py
MTLORA=configs/mtlora/mtlora_swin-t_r64_pascal-448.py
QUICKSTART=configs/quickstart/mtlora_swin-mini_synthetic-128.py

report() {  # NAME OK SECONDS: the line of a run that gave no figures of its own
    echo "{\"run\": \"$1\", \"ok\": $2, \"wall_s\": $3, \"log\": \"$OUT/$1.log\"}" \
        | tee -a "$RESULTS"
}

cli() {  # NAME COMMAND...: a CLI run; its output goes to the log
    local name=$1 start=$SECONDS ok=false
    shift
    timeout 300 "$@" > "$OUT/$name.log" 2>&1 && ok=true
    report "$name" "$ok" $((SECONDS - start))
}

figures() {  # NAME KEY: the line of a run from its $OUT/NAME.json, less its list KEY
    "$PY" -c 'import json, sys
result = json.load(open(sys.argv[1]))
result.pop(sys.argv[3])
print(json.dumps(dict(run=sys.argv[2], ok=True, gpu=sys.argv[4], **result)))' \
        "$OUT/$1.json" "$1" "$2" "$GPU" | tee -a "$RESULTS"
}

bench() {  # NAME CONFIG MODE BATCH [merged] [KEY=VALUE...]: `adapterkit bench --amp`
    local name=$1 config=$2 mode=$3 batch=$4 merged=${5:-} start=$SECONDS
    shift 4
    [ $# -gt 0 ] && shift
    local steps=(--iters 30 --warmup 5)
    [ "$mode" = train ] && steps=(--iters 10 --warmup 3)
    local args=(--mode "$mode" --batch "$batch" --img "$IMG" "${steps[@]}" --amp --json)
    [ -n "$merged" ] && args+=(--merged)
    [ $# -gt 0 ] && args+=(--cfg-options "$@")
    if timeout 300 "$PY" -m adapterkit bench "$config" "${args[@]}" \
            > "$OUT/$name.json" 2> "$OUT/$name.log"; then
        figures "$name" step_s_all
    else
        report "$name" false $((SECONDS - start))
    fi
}

pertask() {  # BATCH: benchmarks/compare_pertask.py on the GPU
    local name=pertask_b$1 start=$SECONDS
    if timeout 300 "$PY" benchmarks/compare_pertask.py --device cuda --batch "$1" --iters 10 \
            --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1; then
        figures "$name" all_seconds
    else
        report "$name" false $((SECONDS - start))
    fi
}

read -r TORCH GPU < <("$PY" -c 'import torch
print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "none")')
echo "# gpu_check $(date -u +%FT%TZ): torch $TORCH, GPU $GPU" >&2

# 1. The CLI on CUDA.
DATA="$OUT/synthetic"
"$PY" -m adapterkit synth "$DATA" --num-train 16 --num-val 8 --size 128 > "$OUT/synth.log" 2>&1
SHORT=(train_dataloader.dataset.data_root="$DATA" val_dataloader.dataset.data_root="$DATA"
       test_dataloader.dataset.data_root="$DATA" train_dataloader.batch_size=4
       train_cfg.max_iters=6 train_cfg.val_interval=6 default_hooks.checkpoint.interval=6
       default_hooks.logger.interval=1)
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m adapterkit train
          "$QUICKSTART" --launcher pytorch --amp)
cli cli_ddp_amp_syncbn "${TORCHRUN[@]}" --work-dir "$OUT/ddp" \
    --cfg-options sync_bn=torch "${SHORT[@]}"
cli cli_fsdp_amp "${TORCHRUN[@]}" --work-dir "$OUT/fsdp" \
    --cfg-options strategy.type=FSDPStrategy strategy.state_dict_cfg=full \
    strategy.model_wrapper.auto_wrap_policy.type=adapterkit.swin_block_wrap_policy \
    strategy.model_wrapper.use_orig_params=True "${SHORT[@]}"

# 2. Training steps, batch 32 at 448.
bench train_full "$FULL" train "$BATCH"
bench train_lora_r4 "$LORA" train "$BATCH"
bench train_mtlora_r64 "$MTLORA" train "$BATCH"
bench train_full_channels_last "$FULL" train "$BATCH" '' model.channels_last=True
bench train_full_with_cp "$FULL" train "$BATCH" '' model.backbone.with_cp=True

# Inference: latency at batch 1, throughput at batch 32.
bench infer_full_b1 "$FULL" infer 1
bench infer_lora_r4_merged_b1 "$LORA" infer 1 merged
bench infer_mtlora_r64_merged_b1 "$MTLORA" infer 1 merged
bench infer_full_b32 "$FULL" infer "$BATCH"
bench infer_mtlora_r64_merged_b32 "$MTLORA" infer "$BATCH" merged

# 3. Per-task LoRA against four single-task LoRA models.
pertask 2
pertask 8

# Last, as it compiles for a minute or two: is torch.compile worth it here?
bench train_mtlora_r64_compile "$MTLORA" train "$BATCH" '' model.torch_compile=True

# The targets of issues 7 and 14.
"$PY" - "$RESULTS" <<'EOF'
import json
import sys

with open(sys.argv[1]) as f:
    runs = {run['run']: run for run in map(json.loads, f)}


def figure(name, key):
    return runs.get(name, {}).get(key)


train = figure('train_mtlora_r64', 'images_per_s')
summary = dict(run='summary', failed=[n for n, r in runs.items() if not r['ok']],
               mtlora_r64_train_img_s=train,
               mtlora_r64_train_target_1000=train is not None and train >= 1000)
for batch in ('b1', 'b32'):
    plain = figure(f'infer_full_{batch}', 'step_s')
    merged = figure(f'infer_mtlora_r64_merged_{batch}', 'step_s')
    ratio = round(merged / plain, 3) if plain and merged else None
    summary[f'merged_mtlora_over_plain_latency_{batch}'] = ratio
    summary[f'merged_mtlora_within_15pct_{batch}'] = ratio is not None and ratio <= 1.15
for batch in (2, 8):
    ratio = figure(f'pertask_b{batch}', 'ratio')
    summary[f'pertask_over_four_lora_b{batch}'] = ratio
    summary[f'pertask_target_0.8_b{batch}'] = ratio is not None and ratio <= 0.8
print(json.dumps(summary))
EOF
