#!/bin/sh
# The steady state: an error budget of 1 % over the load's last one-second slice (before the
# load's first slice, one request of our own must succeed), and no finding of the fuzzer, if
# one runs (a 5xx answer, or the server gone).
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch http)
last=$(tail -n 1 "$dir/load.jsonl" 2>/dev/null || true)
if [ -z "$last" ]; then
    curl --silent --fail --max-time 2 --output /dev/null http://10.201.0.2:8080/
else
    echo "$last" | awk '{
        match($0, /"requests": [0-9]+/); requests = substr($0, RSTART + 12, RLENGTH - 12) + 0
        match($0, /"errors": [0-9]+/); errors = substr($0, RSTART + 10, RLENGTH - 10) + 0
        printf "errors %d of %d requests, budget 1%%\n", errors, requests
        exit !(requests > 0 && errors * 100 <= requests)
    }'
fi
fuzzed=$(tail -n 1 "$dir/fuzz.jsonl" 2>/dev/null || true)
if [ -n "$fuzzed" ]; then
    echo "$fuzzed" | awk '{
        match($0, /"findings": [0-9]+/); findings = substr($0, RSTART + 12, RLENGTH - 12) + 0
        printf "fuzzer findings %d\n", findings
        exit findings > 0
    }'
fi
