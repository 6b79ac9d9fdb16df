#!/bin/sh
# The application: it inserts rows into the primary one transaction at a time, remembering each
# one PostgreSQL committed; when the primary cannot be reached it carries on read-only against
# the hot standby (the drill's choice: no promotion), and goes back to writing when the primary
# returns. One JSON line a second: commits, failed writes, reads served by the standby.
set -u
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch postgres)
: > "$dir/acked"
n=0
commits=0 failed=0 standby_reads=0 standby_failed=0
next=$(($(date +%s) + 1))
while :; do
    n=$((n + 1))
    if psql -h 127.0.0.1 -p 5491 -U postgres -Atq -v ON_ERROR_STOP=1 \
        -c "INSERT INTO drill VALUES ($n)" >/dev/null 2>&1; then
        commits=$((commits + 1))
        echo "$n" >> "$dir/acked"
    else
        failed=$((failed + 1))
        if psql -h 127.0.0.1 -p 5492 -U postgres -Atq -c "SELECT count(*) FROM drill" >/dev/null 2>&1; then
            standby_reads=$((standby_reads + 1))
        else
            standby_failed=$((standby_failed + 1))
        fi
        sleep 0.05
    fi
    if [ "$(date +%s)" -ge "$next" ]; then
        printf '{"commits": %d, "write_failed": %d, "standby_reads": %d, "standby_failed": %d}\n' \
            "$commits" "$failed" "$standby_reads" "$standby_failed"
        commits=0 failed=0 standby_reads=0 standby_failed=0
        next=$((next + 1))
    fi
done
