#!/bin/sh
# After the power cut: once PostgreSQL is gone, its filesystem is unmounted and the image is
# attached to another loop device (the cut device's cache goes with it, as at a power cut; the
# writes to 7:42 keep failing until the fault ends), mounted and PostgreSQL started on it again,
# which recovers by replaying its WAL. Then, every second, a JSON line: the commits the
# application saw acknowledged, how many of them are in the table, and whether the server
# replayed WAL. Ends on SIGTERM: a fast shutdown, the filesystem unmounted, the loop device
# detached.
set -u
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
bin=$(pg_bin)
loop=
stop() {
    stop_pidfile "$dir/pid" INT
    wait
    # The first server, if no cut came, gets its own SIGTERM: it must be gone before the unmount.
    tries=0
    while pgrep -f "postgres -D $dir/mnt/data" >/dev/null && [ $tries -lt 100 ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    umount "$dir/mnt" 2>/dev/null
    [ -z "$loop" ] || losetup -d "$loop"
    losetup -d /dev/loop42 2>/dev/null
    exit "${1:-0}"
}
trap stop TERM INT HUP
rm -f "$dir/pid"
while pgrep -f "postgres -D $dir/mnt/data" >/dev/null; do sleep 0.1; done
echo "PostgreSQL is gone: unmounting, attaching the image anew"
umount "$dir/mnt" || umount -l "$dir/mnt"
losetup -d /dev/loop42
loop=$(losetup -f --show "$dir/disk.img")
mount "$loop" "$dir/mnt"
as_postgres "$bin/postgres" -D "$dir/mnt/data" 2> "$dir/server.log" &
server=$!
echo $server > "$dir/pid"
until psql -h 127.0.0.1 -p 5493 -U postgres -Atq -c "SELECT 1" >/dev/null 2>&1; do
    if ! kill -0 $server 2>/dev/null; then
        echo "PostgreSQL did not start:"
        cat "$dir/server.log"
        stop 1
    fi
    sleep 0.2
done
echo "PostgreSQL is back on $loop"
grep -E "not properly shut down|redo (starts|done)" "$dir/server.log"
while :; do
    acked=$(wc -l < "$dir/acked")
    present=$(psql -h 127.0.0.1 -p 5493 -U postgres -Atq -c \
        "SELECT count(*) FROM drill WHERE n IN ($(paste -sd, "$dir/acked"))" 2>/dev/null)
    replayed=0
    grep -q "redo done" "$dir/server.log" && replayed=1
    [ -z "$present" ] || printf '{"acked": %d, "present": %d, "missing": %d, "replayed": %d}\n' \
        "$acked" "$present" $((acked - present)) "$replayed"
    sleep 1
done
