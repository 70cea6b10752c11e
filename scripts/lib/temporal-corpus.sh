# The clip corpus of the temporal claims (docs/temporal.md): every clip the project fetches (scripts/fetch-samples)
# and generated clips of varied motion (scripts/synth, with ground truth). Sourced by scripts/bench-temporal
# (`--only corpus`), after BIN, OUT and the demo model are set; needs scripts/lib/temporal-demo.sh and venv.sh.
#
# Per clip, with the defaults (`--temporal delta` and nothing else: the default thresholds and the accuracy guard):
#   `process --model demo.safetensors --score 0.5 --jsonl` (untracked: a tracked JSONL holds only confirmed tracks,
#   whose history would blur the agreement; score 0.5 as pipelines/demo.yaml) with --temporal off and delta, alternating, CORPUS_REPEAT
#   times each (default 2; fps: the best; end to end means decode, model, tracker, JSONL), agreement of delta with off (F1 and mask IoU
#   at score >= 0.5, scripts/py/temporal_agreement.py), the dense detector's noise floor (`bench temporal
#   --noise-floor`, first CORPUS_FLOOR_FRAMES frames), and for generated clips box AP / mask AP / PQ of off and delta
#   against the ground truth (scripts/py/eval_accuracy.py).

# NAME=SYNTH ARGS (generated, with ground truth) or NAME=path (fetched).
CORPUS_CLIPS=(
  "vtest=samples/external/vtest.avi"                   # static camera, MPEG-4 re-coding noise
  "bikes=samples/external/bikes.mp4"                   # moving camera
  "carphone=samples/external/carphone_pristine.mp4"    # hand-held, close-up
  "megamind=samples/external/Megamind.avi"             # animated film, cuts
  "bigbuckbunny=samples/external/bigbuckbunny.mp4"     # animated film, 1280x720
)
CORPUS_SYNTH=(
  "synth-static=--pan off --light off --traffic sparse --noise 2"   # bench-temporal's static-sparse scene
  "synth-clean=--pan off --light off --traffic sparse --noise 0"    # the same without sensor noise
  "synth-busy=--pan off --light off --traffic busy --noise 2"       # static camera, busy traffic
  "synth-light=--pan off --light on --traffic busy --noise 2"       # changing light
  "synth-pan=--pan on --light off --traffic sparse --noise 2"       # panning camera
  "synth-parked=--pan off --light off --traffic parked --noise 2"   # static camera, nothing moves for a while
)
CORPUS_FLOOR_FRAMES=${CORPUS_FLOOR_FRAMES:-60} CORPUS_REPEAT=${CORPUS_REPEAT:-2} CORPUS_ONLY=${CORPUS_ONLY:-}
corpus_want() { [ -z "$CORPUS_ONLY" ] || [[ ",$CORPUS_ONLY," == *",$1,"* ]]; }  # CORPUS_ONLY=vtest,synth-static

corpus_process() {  # CLIP FRAMES MODE JSONL : fps of one run (from the last stderr line)
  "$BIN" process "$1" --model "$DEMO" --score 0.5 --temporal "$3" --max-frames "$2" --jsonl "$4" \
    --progress-interval 100000 2>&1 | tail -1 | sed -n 's/.*(\([0-9.]*\) fps).*/\1/p'
}

corpus_clip() {  # NAME CLIP FRAMES [GTDIR]
  local name="$1" clip="$2" frames="$3" gt="${4:-}" d="$OUT/corpus/$1"
  mkdir -p "$d/off" "$d/delta"
  local offs=() dels=() k
  for k in $(seq "$CORPUS_REPEAT"); do
    offs+=("$(corpus_process "$clip" "$frames" off "$d/off/clip_004.jsonl")")
    dels+=("$(corpus_process "$clip" "$frames" delta "$d/delta/clip_004.jsonl")")
  done
  "$EV" scripts/py/temporal_agreement.py "$d/off/clip_004.jsonl" "$d/delta/clip_004.jsonl" --score 0.5 > "$d/agreement.json"
  "$BIN" bench temporal "$clip" --model "$DEMO" --frames "$CORPUS_FLOOR_FRAMES" --agreement-score 0.5 --noise-floor \
    > "$d/floor.txt" 2> "$d/floor.err" || { cat "$d/floor.err" >&2; return 1; }
  local acc=""
  if [ -n "$gt" ]; then
    "$EV" scripts/py/eval_accuracy.py --gt "$gt" --pred "off=$d/off" --pred "delta=$d/delta" --baseline off \
      --json "$d/accuracy.json" > "$d/accuracy.txt"
    acc="$d/accuracy.json"
  fi
  "$EV" - "$name" "${offs[*]}" "${dels[*]}" "$d/agreement.json" "$d/floor.txt" "$acc" <<'PY'
import json, re, sys
name, offs, dels, agr, floor, acc = sys.argv[1:]
off, delta = max(map(float, offs.split())), max(map(float, dels.split()))
a = json.load(open(agr))
t = open(floor).read()
m = re.search(r"noise floor .*?: F1 ([0-9.]+)", t); fl = float(m.group(1)) if m else float("nan")
m = re.search(r"noise floor .*?mask IoU ([0-9.]+)", t); fm = float(m.group(1)) if m else float("nan")
gt = ""
if acc:
    r = json.load(open(acc))
    def pq(x):
        p = x.get("panoptic", {}); p = p.get("All", p)
        return p.get("PQ", float("nan"))
    gt = " ".join("%s %+.3f" % (k, v) for k, v in (
        ("boxAP", r["delta"]["bbox"]["AP"] - r["off"]["bbox"]["AP"]),
        ("maskAP", r["delta"]["segm"]["AP"] - r["off"]["segm"]["AP"]),
        ("PQ", pq(r["delta"]) - pq(r["off"]))))
mi = a["mask_iou"]
ok = (a["f1"] >= fl - 0.01) and (mi is None or mi >= fm - 0.01) and delta >= 0.95 * off
guard = ",".join("%s:%d" % kv for kv in sorted(a["guard"].items()))
print("| %s | %d | %.2f | %.2f | %.2fx | %.3f | %.4f | %.4f | %s | %s | %s | %s | %s |" % (
    name, a["frames"], off, delta, delta / off, a["recomputed_mean"] or 0, a["f1"], fl,
    "%.4f" % mi if mi is not None else "-", "%.4f" % fm if fm == fm else "-", guard or "-", gt or "-",
    "yes" if ok else "no"))
PY
}

corpus() {  # FRAMES
  local frames="$1"
  EV=$(fpn_py tracking)
  "$EV" scripts/py/temporal_agreement.py --self-test >&2
  echo "== corpus: process --model $DEMO --score 0.5, --temporal off vs delta (defaults, guard on), $frames frames"
  echo "| clip | frames | off fps | delta fps | e2e | recomputed | F1 vs off | floor F1 | mask IoU | floor mask IoU | guard | vs ground truth (delta − off) | targets |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  local e
  for e in "${CORPUS_CLIPS[@]}"; do
    local name="${e%%=*}" clip="${e#*=}"
    corpus_want "$name" || continue
    [ -f "$clip" ] || { echo "| $name | not fetched |"; continue; }
    corpus_clip "$name" "$clip" "$frames"
  done
  for e in "${CORPUS_SYNTH[@]}"; do
    local name="${e%%=*}" args gt
    corpus_want "$name" || continue
    read -r -a args <<< "${e#*=}"
    gt="$OUT/corpus/gt-$name-f$frames"
    if [ ! -f "$gt/panoptic.json" ]; then
      rm -rf "$gt"
      scripts/synth --out "$gt" --seed 3 --first-clip 4 --clips 1 --crf 23 --frames "$frames" "${args[@]}" >&2
    fi
    corpus_clip "$name" "$gt/videos/clip_004.mp4" "$frames" "$gt"
  done
}
