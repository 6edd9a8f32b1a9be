#!/usr/bin/env bash
# Fresh-clone check (issue #10): clone this repository into a temporary directory and run
# `make demo` then `make test` there, with nothing else. Slow (it builds a new virtualenv);
# run it by hand: `make fresh-check` or `bash scripts/fresh_check.sh`. KEEP=1 keeps the clone.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d -t lipforcing-fresh-XXXXXX)"
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$tmp"' EXIT; fi
echo "fresh clone of $repo (HEAD $(git -C "$repo" rev-parse --short HEAD)) in $tmp"
git clone --quiet "$repo" "$tmp/lipforcing"
cd "$tmp/lipforcing"
start=$(date +%s)
make demo
echo "make demo: $(( $(date +%s) - start )) s"
start=$(date +%s)
make test
echo "make test: $(( $(date +%s) - start )) s"
echo "fresh-check passed"
