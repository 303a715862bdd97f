#!/usr/bin/env bash
# The overnight Copilot on one GPU, and the torch engine's GPU checks: what the README's GPU
# figures and checkpoints/copilot-large come from. From the repo root, on a CUDA machine with PyTorch:
#
#     CORPUS=DIR OUT=DIR bash benchmarks/gpu_session.sh [train] [resume] [bench]
#
# train   copilot-large with --engine torch --device cuda to the end of its schedule, exported;
#         the run folder's latest step, settings and metrics and the export are packed into
#         OUT/run.tar.part-* (split to travel), so the run can be resumed elsewhere
# resume  the torch engine's Ctrl-C on the GPU: the copilot preset 400 steps straight, and again
#         with SIGINT near step 200 then --resume; the two runs' logged losses side by side
# bench   benchmarks/gpu_pretrain.py: eager float32, --bf16, --compile, both
#
# CORPUS is the training text. To train on the shipped checkpoints' corpus on a machine whose
# Python is another version, copy the files `python -m pretrain.corpus train` and `val` list,
# under their paths relative to the standard library: the run's corpus fingerprint (printed at
# the end of `train`) then equals checkpoints/copilot's.
set -u
CORPUS=${CORPUS:?set CORPUS to the training text folder}
OUT=${OUT:?set OUT to a folder for the results}
RUNS=${RUNS:-/tmp/gpu-session}
HOURS=${HOURS:-0.1}  # the training's guard on this machine: a cut run resumes anywhere with --resume
DEVICE=${DEVICE:-cuda}  # cpu: a smoke test of this script (with a small HOURS and BENCH_STEPS)
BENCH_STEPS=${BENCH_STEPS:-500}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
stages=${*:-train resume bench}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__)"

for stage in $stages; do
  case $stage in
  train)
    run=$RUNS/copilot-large
    # evaluations run on the CPU (tinytorch): --threads 8 gives them 8 BLAS threads, --eval-every
    # 2000 keeps them to a minute in all
    time python3 -m pretrain copilot-large --engine torch --device "$DEVICE" --corpus "$CORPUS" --threads 8 \
      --eval-every 2000 --hours "$HOURS" --out "$run" --export "$run-export" --quiet 2>&1 | tee "$OUT/train.log"
    python3 - "$run-export" <<'EOF' | tee -a "$OUT/train.log"
import json, sys
p = json.load(open(sys.argv[1] + "/config.json"))["provenance"]
print("steps", p["steps"], "corpus fingerprint", p["corpus"]["fingerprint"])
EOF
    latest=$(cat "$run/latest")
    tar -C "$RUNS" -cf - copilot-large/settings.json copilot-large/metrics.jsonl copilot-large/latest \
      "copilot-large/$latest" copilot-large-export | split -b 15M - "$OUT/run.tar.part-"
    ;;
  resume)
    {
      flags=(copilot --engine torch --device "$DEVICE" --corpus "$CORPUS" --threads 8 --steps 400 --save-every 100
             --log-every 10 --eval-every 400 --quiet)
      python3 -m pretrain "${flags[@]}" --out "$RUNS/straight"
      python3 -m pretrain "${flags[@]}" --out "$RUNS/cut" &
      pid=$!
      until grep -q '"step": 200' "$RUNS/cut/metrics.jsonl" 2>/dev/null || ! kill -0 $pid 2>/dev/null; do
        sleep 0.2
      done
      kill -INT $pid
      wait $pid; echo "interrupted run exited $?"
      python3 -m pretrain copilot --resume --out "$RUNS/cut" --quiet; echo "resumed run exited $?"
      python3 - "$RUNS/straight/metrics.jsonl" "$RUNS/cut/metrics.jsonl" <<'EOF'
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(f)) if r["kind"] == "train"} for f in sys.argv[1:])
diffs = [abs(a[s] - b[s]) for s in sorted(a) if s in b]
print("step  straight  interrupted+resumed")
for s in sorted(a)[::5]:
    print(s, f"{a[s]:.6f}", f"{b.get(s, float('nan')):.6f}")
print(f"{len(diffs)} logged steps compared; largest difference {max(diffs):.2e}")
EOF
    } 2>&1 | tee "$OUT/resume.log"
    ;;
  bench)
    python3 benchmarks/gpu_pretrain.py --model copilot-large --corpus "$CORPUS" --steps "$BENCH_STEPS" 2>&1 | tee "$OUT/bench.log"
    ;;
  esac
done
