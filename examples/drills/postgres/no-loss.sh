#!/bin/sh
# The steady state: every row the application saw committed is on the primary (when it can be
# reached: while it cannot, the standby must answer) and on the standby once it caught up.
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch postgres)
acked=$(wc -l < "$dir/acked" 2>/dev/null || echo 0)
count() {
    PGCONNECT_TIMEOUT=3 timeout 5 psql -h 127.0.0.1 -p "$1" -U postgres -Atq -c \
        "SELECT count(*) FROM drill WHERE n IN ($(paste -sd, "$dir/acked"))" 2>/dev/null
}
[ "$acked" -gt 0 ] || exit 0
primary=$(count 5491)
echo "committed $acked, on the primary ${primary:-unreachable}"
if [ -z "$primary" ]; then
    [ -n "$(count 5492)" ]
else
    [ "$primary" -ge "$acked" ]
fi
