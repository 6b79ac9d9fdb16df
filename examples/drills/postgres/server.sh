#!/bin/sh
# The drill's PostgreSQL server alone, on 127.0.0.1:5493, its data under the scratch directory,
# run as user postgres in the foreground of this script (so that faults on this workload's
# process tree reach every PostgreSQL process) and started again whenever it stops, as a
# service manager would. Ends, with the server, on SIGTERM (chaos run's stop): a fast shutdown,
# waited for, so no PostgreSQL process outlives the script. setpriv execs the server itself
# (runuser would stay between, and SIGKILL the postmaster 2 s after a SIGTERM, leaving its
# children behind).
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
bin=$(pg_bin)
stop() {
    stop_pidfile "$dir/pid" INT
    wait
    exit 0
}
trap stop TERM INT HUP
rm -rf "$dir/data" "$dir/acked"
chown postgres "$dir"
as_postgres "$bin/initdb" --auth=trust --username=postgres --no-sync -D "$dir/data" >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 5493
unix_socket_directories = '$dir'
fsync = on
restart_after_crash = on
CONF
while :; do
    as_postgres "$bin/postgres" -D "$dir/data" &
    echo $! > "$dir/pid"
    status=0
    wait $! || status=$?
    echo "postgres ended (status $status): starting it again"
    sleep 0.5
done
