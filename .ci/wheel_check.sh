#!/usr/bin/env bash
# The built wheel works without the checkout: build it, install it (not -e) into a fresh venv, and run the
# commands from a folder outside the repository. Configs (srexp/conf/) and shipped models (srexp/models/) must be
# inside the wheel for this to pass.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/venv/bin/pip" install -q "$work"/dist/srexp-*.whl
cd "$work"
export SREXP_OUTPUTS="$work/outputs" WANDB_MODE=offline
"$work/venv/bin/srexp-train" debug=fdr logger=csv
"$work/venv/bin/srexp-eval" model=fsrcnn_x3
if [ -n "${SREXP_DATA:-}" ]; then
  "$work/venv/bin/srexp-eval" arch=bicubic eval.sets=[Set5] eval.scales=[2] eval.protocol=y_float
fi
echo "wheel check: the installed wheel's srexp-train and srexp-eval ran outside the checkout"
