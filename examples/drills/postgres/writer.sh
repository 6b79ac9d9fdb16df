#!/bin/sh
# The application: it inserts rows one transaction at a time and remembers each one PostgreSQL
# committed. One JSON line a second: commits and failed writes.
set -u
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
: > "$dir/acked"
n=0 commits=0 failed=0
next=$(($(date +%s) + 1))
while :; do
    n=$((n + 1))
    if psql -h 127.0.0.1 -p 5493 -U postgres -Atq -v ON_ERROR_STOP=1 \
        -c "INSERT INTO drill VALUES ($n)" >/dev/null 2>&1; then
        commits=$((commits + 1))
        echo "$n" >> "$dir/acked"
    else
        failed=$((failed + 1))
        sleep 0.1
    fi
    if [ "$(date +%s)" -ge "$next" ]; then
        printf '{"commits": %d, "write_failed": %d}\n' "$commits" "$failed"
        commits=0 failed=0
        next=$((next + 1))
    fi
done
