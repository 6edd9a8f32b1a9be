#!/usr/bin/env bash
# Reproduce the shipped tiny checkpoints (src/lipforcing/assets/tiny/) from nothing, on the CPU.
# Every step is seeded and resumable; rerunning skips what is done. About 1.5 h on 2 cores.
#   bash scripts/train_tiny.sh [RUN_DIR]      (default runs/tiny; codec in RUN_DIR/../codec)
set -euo pipefail
RUN=${1:-runs/tiny}
CODEC=$(dirname "$RUN")/codec
LF=${LF:-lipforcing}

# 1. SynthTalk data: 96 training clips (seeds 0..95) and 8 held-out clips (seeds 50000..50007),
#    4 s each, turned into tiny-preset shards (exact landmarks from the .npz, no detector).
$LF synthtalk --out "$RUN/synthtalk/train" --clips 96 --seconds 4 --seed 0 --no-sheet
$LF synthtalk --out "$RUN/synthtalk/test" --clips 8 --seconds 4 --seed 50000 --no-sheet
$LF preprocess "$RUN/synthtalk/train" --out "$RUN/shards/train" --preset tiny
$LF preprocess "$RUN/synthtalk/test" --out "$RUN/shards/test" --preset tiny
touch "$RUN/synthtalk/train/done" "$RUN/synthtalk/test/done"

# 2. The tiny codec (TAEHV family), held-out PSNR in $CODEC/report.json.
$LF train codec "$RUN/shards/train" --eval "$RUN/shards/test" --out "$CODEC" --steps 1500 --seed 0

# 3. Our SyncNet (reward and tiny-scale sync metric), 6 training clips held out for its
#    offset-detection accuracy.
$LF train syncnet "$RUN/shards/train" --out "$RUN/syncnet" --threads 1 --holdout \
  synthtalk_0000090 synthtalk_0000091 synthtalk_0000092 synthtalk_0000093 synthtalk_0000094 \
  synthtalk_0000095

# 4. Teacher, Stage 1 (Diffusion Forcing), Stage 2 (Sync-Window DMD with audio-only CFG + SyncNet
#    reward), held-out evaluation: $RUN/report.md. The shipped run did teacher and Stage 1 with 2
#    threads and Stage 2 with --threads 1 (the thread count changes float summation order, so a
#    rerun matches statistically, not bit for bit). Add --ablation-steps 60 for the Table-2 arms.
$LF train recipe tiny --out "$RUN" --codec "$CODEC/codec.safetensors" \
  --syncnet "$RUN/syncnet/syncnet.safetensors" --train-clips 96 --teacher-steps 1000 \
  --stage1-steps 300 --seed 0

# 5. Ship: student + codec + SyncNet into the package.
ASSETS=src/lipforcing/assets/tiny
mkdir -p "$ASSETS"
cp "$RUN/stage2/student.safetensors" "$RUN/stage2/student.json" "$ASSETS/"
cp "$CODEC/codec.safetensors" "$ASSETS/codec.safetensors"
cp "$RUN/syncnet/syncnet.safetensors" "$RUN/syncnet/syncnet.json" "$ASSETS/"
echo "shipped into $ASSETS"
