#!/bin/sh
# The steady state: every row the application saw committed is there, whenever the server
# answers within 5 s (while it recovers from a crash, it may not: that is no loss).
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
acked=$(wc -l < "$dir/acked" 2>/dev/null || echo 0)
[ "$acked" -gt 0 ] || exit 0
present=$(PGCONNECT_TIMEOUT=3 timeout 5 psql -h 127.0.0.1 -p 5493 -U postgres -Atq -c \
    "SELECT count(*) FROM drill WHERE n IN ($(paste -sd, "$dir/acked"))" 2>/dev/null)
echo "committed $acked, present ${present:-unknown (the server does not answer)}"
[ -z "$present" ] || [ "$present" -ge "$acked" ]
