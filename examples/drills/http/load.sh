#!/bin/sh
# The load: wrk against the drill's nginx in one-second slices, one JSON line per slice
# (report.lua), also kept in the scratch directory for the error-budget check.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch http)
while :; do
    wrk --threads 1 --connections 10 --duration 1s --timeout 2s --script "$here/report.lua" \
        http://10.201.0.2:8080/ | tail -n 1 | tee -a "$dir/load.jsonl"
done
