# Shared helper for tooling scripts: a cached Python venv per purpose, outside the repo so that every
# checkout and worktree shares it. Usage:
#   source "$(dirname "$0")/lib/venv.sh"
#   PY=$(fpn_py torch)        # prints the python of the "torch" venv, created (once) with the pins below
# The venv is (re)built only when its requirement list changes. Installs go to stderr, quietly.
FPN_CACHE="${FPNSTREAM_CACHE:-$HOME/.cache/fpnstream}"
FPN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Every Python package version the scripts pin, defined here and nowhere else (docs/models.md and docs/tracking.md
# quote them). Changing one rebuilds the venvs that use it on their next use.
FPN_PIN_TORCH="torch==2.15.0 torchvision==0.29.2"
FPN_PIN_ONNX="onnx==1.17.0 onnxruntime==1.20.1"
FPN_PIN_ONNX_NUMPY="numpy==2.1.3"
FPN_PIN_OPENVINO="openvino==2026.4.1"
FPN_PIN_TRACKING="supervision==0.30.9 trackeval==1.3.0"
FPN_PIN_ULTRALYTICS="ultralytics==8.4.190 onnxslim==0.1.98"

# The requirements of each named venv (the order is part of the cache key: keep it).
fpn_requirements() {
  case "$1" in
    torch)      echo "$FPN_PIN_TORCH safetensors" ;;                  # parity, fixtures, convert, train, bench
    onnx)       echo "$FPN_PIN_ONNX $FPN_PIN_ONNX_NUMPY" ;;           # parity-onnx, bench-onnx
    torch-onnx) echo "$FPN_PIN_TORCH safetensors $FPN_PIN_ONNX $FPN_PIN_OPENVINO" ;;  # bench-peers
    tracking)   echo "$FPN_PIN_TRACKING" ;;                           # synth, eval-tracking, eval-accuracy
    yolo)       echo "$FPN_PIN_TORCH $FPN_PIN_ONNX $FPN_PIN_ULTRALYTICS" ;;   # parity-yolo: build+export YOLO models
    outputs)    echo "pillow jsonschema" ;;                           # validate-jsonl, gen-font
    coco)       echo "pycocotools numpy" ;;                           # check-coco
    *) echo "venv: unknown venv '$1'" >&2; return 1 ;;
  esac
}

# fpn_py NAME: the python of the named venv with its pinned requirements (created on first use).
fpn_py() {
  local req
  req=$(fpn_requirements "$1") || return 1
  # shellcheck disable=SC2086  # the requirement list is space-separated on purpose
  fpn_venv "$1" $req
}

# fpn_venv NAME REQUIREMENT...: a venv with exactly these requirements (prefer fpn_py NAME).
fpn_venv() {
  local name="$1"; shift
  local dir="$FPN_CACHE/venv-$name"
  local want="$*"
  if [ -x "$dir/bin/python" ] && [ -f "$dir/.requirements" ] && [ "$(cat "$dir/.requirements")" = "$want" ]; then
    echo "$dir/bin/python"; return 0
  fi
  # python3, python3-venv and python3-pip come from Debian (quiet when already installed).
  "$FPN_ROOT/scripts/setup" --no-swift >&2 || return 1
  mkdir -p "$FPN_CACHE"
  echo "venv: creating $dir ($want)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" >&2 || return 1
  "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2 || { echo "venv: pip install failed for $name" >&2; return 1; }
  echo "$want" > "$dir/.requirements"
  echo "$dir/bin/python"
}
