#!/usr/bin/env bash
# The demo: synthetic pedestrians -> train the baseline on CPU -> evaluate, before vs after training -> use the
# model on synthetic multi-camera video: track people, link them across cameras, score against the ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-demo_out}
REIDKIT=${REIDKIT:-.venv/bin/reidkit}
start=$(date +%s)

echo "== 1/5 generate a synthetic pedestrian set (hard: misalignment, occlusion, look-alike clothing)"
$REIDKIT synth "$OUT/data" --ids 200 --cams 6 --seed 0 --difficulty hard --overwrite --quiet
$REIDKIT datasets summary --name synthetic --root "$OUT/data"

echo "== 2/5 train the baseline (metrics of the untrained model are computed first)"
$REIDKIT train --config configs/demo.yaml --out "$OUT/run" --set "data.root=$OUT/data" "$@"

echo "== 3/5 evaluate the checkpoint (report: CMC curve and ranked lists)"
$REIDKIT eval --checkpoint "$OUT/run/checkpoint.pt" --report "$OUT/report" --quiet

echo "== 4/5 before vs after training"
.venv/bin/python - "$OUT/run/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keys = ["rank1", "rank5", "rank10", "mAP", "mINP"]
print(f"{'':<18}" + "".join(f"{k:>8}" for k in keys))
for name in ("before", "after"):
    print(f"{name + ' training':<18}" + "".join(f"{100 * m[name][k]:>8.2f}" for k in keys))
PY
echo "== 5/5 video -> people: 3 cameras, tracked, re-linked and linked across cameras with this model, then scored"
$REIDKIT synth-video "$OUT/video" --cams 3 --ids 8 --seconds 40 --size 640x360 --seed 0 --overwrite --quiet
$REIDKIT track --videos "$OUT/video" --detector detections --checkpoint "$OUT/run/checkpoint.pt" \
    --out "$OUT/tracks" --render --no-progress
$REIDKIT track-eval --gt "$OUT/video" --results "$OUT/tracks"
echo "annotated videos: $OUT/tracks/<camera>.webm"
echo "demo finished in $(( $(date +%s) - start )) s; report in $OUT/report"
