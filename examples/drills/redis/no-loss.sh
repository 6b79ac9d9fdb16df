#!/bin/sh
# The steady state: no write Redis acknowledged is missing (the writer checks after every
# restart of the server).
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch redis)
last=$(tail -n 1 "$dir/writer.jsonl" 2>/dev/null || true)
[ -n "$last" ] || exit 0
echo "$last" | awk '{
    match($0, /"lost": [0-9]+/); lost = substr($0, RSTART + 8, RLENGTH - 8) + 0
    printf "acknowledged writes lost: %d\n", lost
    exit lost > 0
}'
