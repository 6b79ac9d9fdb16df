#!/bin/sh
# The steady state: every row the application saw committed is there, whenever the server
# answers within 5 s (while it recovers from a crash, it may not: that is no loss).
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
count_acked "$dir" 5493
[ "$acked" -gt 0 ] || exit 0
echo "committed $acked, present ${present:-unknown (the server does not answer)}"
[ -z "$present" ] || [ "$present" -ge "$acked" ]
