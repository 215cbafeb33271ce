#!/usr/bin/env bash
# The DVC remote round trip on this repository, with a temporary folder as the remote:
#   dvc push (from this checkout) -> git clone -> dvc pull -> dvc status -> dvc repro of both pipelines
#   (nothing to do).
# Run it after `dvc repro` (and the paper pipeline, if its outputs should travel too) with everything
# committed. Prints each command and its output; exits non-zero if the clone is not up to date.
#   bash scripts/remote_roundtrip.sh [RECORD]   # RECORD: also write the transcript there
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
record=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "\$ dvc remote add --local roundtrip <tmp>/remote && dvc push -r roundtrip"
  dvc remote add --local --force roundtrip "$work/remote" >/dev/null
  dvc push -r roundtrip 2>&1 | tail -n 1
  dvc remote remove --local roundtrip >/dev/null
  echo "\$ git clone <repo> <tmp>/clone"
  git clone -q "$repo" "$work/clone"
  cd "$work/clone"
  dvc remote add --local roundtrip "$work/remote" >/dev/null
  echo "\$ dvc pull -r roundtrip"
  dvc pull -r roundtrip 2>&1 | tail -n 1
  echo "\$ dvc status"
  dvc status 2>&1
  for target in dvc.yaml pipelines/paper/dvc.yaml; do
    echo "\$ dvc repro $target"
    dvc repro "$target" > "$work/repro.log" 2>&1
    echo "$(grep -c "didn't change, skipping" "$work/repro.log") stages didn't change, skipping"
    tail -n 1 "$work/repro.log"
    if grep -q "Running stage" "$work/repro.log"; then
      echo "the clone was not up to date: dvc repro $target ran stages" >&2
      exit 1
    fi
  done
} 2>&1 | tee "$work/transcript" || status=$?
status=${status:-0}
if [ -n "$record" ] && [ "$status" -eq 0 ]; then
  cp "$work/transcript" "$repo/$record"
fi
exit "$status"
