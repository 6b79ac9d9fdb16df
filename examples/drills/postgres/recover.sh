#!/bin/sh
# After the power cut: once no PostgreSQL process is left, its filesystem is unmounted and the
# image attached to another loop device (loop 7:42's cache goes with it, and the writes to 7:42
# keep failing until the fault ends), mounted and PostgreSQL started on it again, which
# recovers by replaying its WAL. Then, every second, a JSON line: the commits the application
# saw acknowledged, how many of them are in the table, and whether the server replayed WAL.
# Ends on SIGTERM: PostgreSQL killed, the filesystem unmounted, the loop devices detached (the
# drill waits for it and gives it a minute before SIGKILL: a killed server can take seconds to
# exit in a loaded, emulated guest, and the filesystem stays busy until it has).
set -u
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
bin=$(pg_bin)
# Whether a PostgreSQL process of this data directory lives: backends rename themselves, but
# their command name stays "postgres" and each one works in the data directory (a zombie has no
# working directory left).
postgres_pids() {
    for pid in $(pgrep -u postgres -x postgres); do
        [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir/mnt/data" ] && echo "$pid"
    done
}
postgres_left() {
    [ -n "$(postgres_pids)" ]
}
# Waits up to $1 tenths of a second for every PostgreSQL process of the data directory to end.
wait_postgres_gone() {
    tries=0
    while postgres_left && [ "$tries" -lt "$1" ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
}
stop() {
    # The drill is over: nothing to shut down gracefully. Every PostgreSQL process of the data
    # directory (the first server too, if no cut came) is killed, then the filesystem unmounted
    # and the loop devices detached; what fails is said.
    postgres_pids | xargs -r kill -KILL 2>/dev/null
    wait_postgres_gone 500
    postgres_left && echo "PostgreSQL still runs: $(postgres_pids | tr '\n' ' ')"
    umount "$dir/mnt" || echo "the filesystem cannot be unmounted"
    losetup -j "$dir/disk.img" | cut -d: -f1 | xargs -r -n 1 losetup -d
    exit "${1:-0}"
}
trap stop TERM INT HUP
fail() {
    echo "$1"
    stop 1
}
while postgres_left; do sleep 0.1; done
echo "PostgreSQL is gone: unmounting, attaching the image anew"
umount "$dir/mnt" || fail "the filesystem cannot be unmounted"
losetup -d /dev/loop42 || fail "loop 7:42 cannot be detached"
loop=$(losetup -f --show "$dir/disk.img") || fail "the image cannot be attached"
mount "$loop" "$dir/mnt" || fail "the filesystem cannot be mounted again"
as_postgres "$bin/postgres" -D "$dir/mnt/data" 2> "$dir/server.log" &
server=$!
until psql -h 127.0.0.1 -p 5493 -U postgres -Atq -c "SELECT 1" >/dev/null 2>&1; do
    if ! kill -0 $server 2>/dev/null; then
        cat "$dir/server.log"
        fail "PostgreSQL did not start"
    fi
    sleep 0.2
done
echo "PostgreSQL is back on $loop"
grep -E "not properly shut down|redo (starts|done)" "$dir/server.log"
while :; do
    # A generous wait: one psql took seconds in a loaded, emulated guest, where 5 s let none
    # through after recovery.
    count_acked "$dir" 5493 30
    replayed=0
    grep -q "redo done" "$dir/server.log" && replayed=1
    [ -z "$present" ] || printf '{"acked": %d, "present": %d, "missing": %d, "replayed": %d}\n' \
        "$acked" "$present" $((acked - present)) "$replayed"
    # In the background: a trapped signal ends `wait` at once, not a foreground sleep.
    sleep 1 &
    wait $!
done
