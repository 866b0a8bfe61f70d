#!/usr/bin/env bash
# GPU check for `flopscope bench` (issue 5): one short prepared script, about 2 minutes on an H100, at most
# ~6 minutes (every step has its own timeout).  Prints everything; with $OUT set, writes the JSON records
# and the log under $OUT (7 files: env.txt, fp32.json, fp16.json, per_layer.json, graph.json,
# channels_last.json, gpu_check.log).
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# Uses an installed flopscope if one imports; otherwise a throw-away copy of the tree laid out as the
# installed package (flopscope/, flopscope/modules, flopscope/yamls) on PYTHONPATH -- no network, no pip.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
DEST=${OUT:-$(mktemp -d /tmp/flopscope_gpu_check.XXXXXX)}
mkdir -p "$DEST"
PY=${PYTHON:-python3}
LOG="$DEST/gpu_check.log"
START=$(date +%s)

main() {

WORK=$(mktemp -d /tmp/flopscope_run.XXXXXX)
cd "$WORK"  # not the repo root: the local flopscope/ would shadow the package mapping
if ! "$PY" -c "import flopscope.modules, flopscope.yamls, flopscope.bench" 2>/dev/null; then
    mkdir -p "$WORK/pkg"
    cp -r "$REPO/flopscope" "$WORK/pkg/flopscope"
    rm -rf "$WORK/pkg/flopscope/modules" "$WORK/pkg/flopscope/yamls"
    cp -r "$REPO/modules" "$WORK/pkg/flopscope/modules"
    cp -r "$REPO/yamls" "$WORK/pkg/flopscope/yamls"
    export PYTHONPATH="$WORK/pkg${PYTHONPATH:+:$PYTHONPATH}"
    echo "== using a copy of $REPO on PYTHONPATH ($WORK/pkg)"
fi

echo "== environment"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
    "$PY" - <<'EOF'
import torch, flopscope.roofline as r
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    n = torch.cuda.get_device_name(0)
    d = r.detect_device(n)
    print("device:", n, "->", d.name if d else "not in the table", d.tflops if d else "", d.gbps if d else "")
    print("allow_tf32 cudnn/matmul:", torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
EOF
} | tee "$DEST/env.txt"

FS=("$PY" -m flopscope)
step() {  # step NAME TIMEOUT ARGS...
    local name=$1 limit=$2
    shift 2
    echo
    echo "== $name: flopscope $*  (timeout ${limit}s, $(( $(date +%s) - START ))s elapsed)"
    timeout "$limit" "${FS[@]}" "$@"
    local rc=$?
    echo "== $name: exit $rc"
}

# whole-model latency, CV, throughput, peak memory, roofline: fp32 and fp16 at batch 1 and 32 (200 iterations)
step fp32 60 bench yolov5s --img 640 --device cuda --dtype fp32 --batch 1,32 --json "$DEST/fp32.json"
step fp16 60 bench yolov5s --img 640 --device cuda --dtype fp16 --batch 1,32 --json "$DEST/fp16.json"
# per-layer events, sum vs whole, instrumenting overhead, achieved % of the roofline per layer
step per_layer 90 bench yolov5s --img 640 --device cuda --dtype fp16 --batch 1,32 --per-layer --json "$DEST/per_layer.json"
# CUDA graph replay (launch overhead removed) and NHWC
step graph 60 bench yolov5s --img 640 --device cuda --dtype fp16 --batch 1,32 --cuda-graph --json "$DEST/graph.json"
step channels_last 60 bench yolov5s --img 640 --device cuda --dtype fp16 --batch 1,32 --channels-last --json "$DEST/channels_last.json"
# the fake-CUDA unit tests plus the real-CUDA smoke test (skipped without a GPU)
echo
echo "== pytest tests/test_bench.py ($(( $(date +%s) - START ))s elapsed)"
# run from $WORK with the repo's config: `python -m pytest` in the repo root would import the local flopscope/
timeout 90 "$PY" -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
    "$REPO/tests/test_bench.py" -k "cuda or stats or roofline" 2>&1 | tail -15

echo
echo "== summary"
"$PY" - "$DEST" <<'EOF'
import json, os, sys
d = sys.argv[1]
for name in ("fp32", "fp16", "per_layer", "graph", "channels_last"):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        print(f"{name:14s} missing (see the log above)")
        continue
    res = json.load(open(p))
    pk = res["peak"]
    for r in res["runs"]:
        lat, rf = r["latency_ms"], r["roofline"]
        s = (f"{name:14s} b{r['batch']:<3d} median {lat['median']:8.3f} ms  p10 {lat['p10']:8.3f}  p90 {lat['p90']:8.3f}"
             f"  CV {100 * lat['cv']:5.1f}%  {r['throughput_img_s']:9.1f} img/s  peak {r['peak_memory_bytes'] / 2**20:8.1f} MiB")
        if rf["bound_ms"] is not None:
            s += f"  bound {rf['bound_ms']:.3f} ms ({pk['name']} {pk['precision']})"
            if rf["achieved_pct"] is not None:
                s += f" = {rf['achieved_pct']:.1f}% achieved"
        print(s)
        pl = r["per_layer"]
        if pl:
            print(f"{'':14s}      per-layer pass {pl['pass_sum_ms']:.3f} ms vs whole {pl['whole_ms']:.3f} ms: ratio "
                  f"{pl['ratio']:.2f} (within x{pl['factor']:g}: {pl['within_factor']}); overhead "
                  f"{pl['overhead_ms_per_layer'] * 1e3:.1f} us/layer; sum of medians {pl['sum_ms']:.3f} ms")
            top = sorted(rf["layers"], key=lambda x: -x["measured_ms"])[:5]
            for x in top:
                print(f"{'':20s}layer {x['index']:2d} {x['module']:12s} {x['measured_ms'] * 1e3:8.1f} us "
                      f"{x['latency_pct']:5.1f}% time {x['flops_pct']:5.1f}% FLOPs {x['bound']:7s} "
                      f"{(x['achieved_pct'] or 0):5.1f}% of bound")
        for g in r["disagreements"][:8]:
            print(f"{'':20s}time >= 2x FLOPs: layer {g['index']} {g['module']} {g['flops_pct']:.1f}% FLOPs / "
                  f"{g['time_pct']:.1f}% time ({g['time_from']})")
    env = res["environment"]
    print(f"{'':14s}      {env['label']}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
          f"cudnn.benchmark {env['cudnn_benchmark']}, channels_last {env['channels_last']}, graph {env['cuda_graph']}")
EOF
echo
echo "== done in $(( $(date +%s) - START ))s; JSON and log in $DEST"
rm -rf "$WORK"
}

main 2>&1 | tee "$LOG"
