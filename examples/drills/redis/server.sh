#!/bin/sh
# The drill's Redis: append-only file with an fsync before every reply (appendfsync always), no
# snapshots, on 127.0.0.1:6399, its data in the scratch directory. Supervised as a service
# manager would: when it dies, it is started again and reloads its append-only file. Runs in the
# foreground; SIGTERM (chaos run's stop) ends Redis and the supervision.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch redis)
rm -rf "$dir/data" "$dir/writer.jsonl"
mkdir -p "$dir/data"
stop() {
    stop_pidfile "$dir/redis.pid"
    wait
    exit 0
}
trap stop TERM INT HUP
while :; do
    redis-server --port 6399 --bind 127.0.0.1 --dir "$dir/data" --pidfile "$dir/redis.pid" \
        --appendonly yes --appendfsync always --save "" --daemonize no &
    status=0
    wait $! || status=$?
    echo "redis-server ended (status $status): starting it again"
done
