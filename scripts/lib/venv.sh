# Shared helper for tooling scripts: a cached Python venv per purpose, outside the repo so that every
# checkout and worktree shares it. Usage:
#   source "$(dirname "$0")/lib/venv.sh"
#   PY=$(fpn_venv torch "torch==2.15.0" "torchvision==0.29.0" safetensors)   # prints the venv's python
# The venv is (re)built only when its requirement list changes. Installs go to stderr, quietly.
FPN_CACHE="${FPNSTREAM_CACHE:-$HOME/.cache/fpnstream}"

fpn_venv() {
  local name="$1"; shift
  local dir="$FPN_CACHE/venv-$name"
  local want="$*"
  if [ -x "$dir/bin/python" ] && [ -f "$dir/.requirements" ] && [ "$(cat "$dir/.requirements")" = "$want" ]; then
    echo "$dir/bin/python"; return 0
  fi
  mkdir -p "$FPN_CACHE"
  echo "venv: creating $dir ($want)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir" >&2 || return 1
  "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2 || { echo "venv: pip install failed for $name" >&2; return 1; }
  echo "$want" > "$dir/.requirements"
  echo "$dir/bin/python"
}
