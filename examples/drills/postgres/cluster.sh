#!/bin/sh
# The drill's PostgreSQL: a primary on 127.0.0.1:5491 and a hot standby streaming from it on
# 127.0.0.1:5492, both under the scratch directory, run as user postgres (PostgreSQL refuses
# root). Runs in the foreground; when it ends (SIGTERM from chaos run included) both stop.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch postgres)
bin=$(pg_bin)
as_postgres() { runuser -u postgres -- "$@"; }
cleanup() {
    for node in primary standby; do
        [ -f "$dir/$node/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$dir/$node" stop -m fast -w >/dev/null 2>&1 || true
    done
    wait
}
trap cleanup EXIT
trap 'exit 0' TERM INT HUP
cleanup
rm -rf "$dir/primary" "$dir/standby" "$dir/acked"
chown postgres "$dir"
as_postgres "$bin/initdb" --auth=trust --username=postgres --no-sync -D "$dir/primary" >/dev/null
cat >> "$dir/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 5491
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 4
fsync = on
CONF
echo "host replication postgres 127.0.0.1/32 trust" >> "$dir/primary/pg_hba.conf"
as_postgres "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" start -w >/dev/null
as_postgres "$bin/psql" -h 127.0.0.1 -p 5491 -U postgres -q -c "CREATE TABLE drill (n bigint PRIMARY KEY)"
as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p 5491 -U postgres -D "$dir/standby" -R --checkpoint=fast
cat >> "$dir/standby/postgresql.conf" <<CONF
port = 5492
hot_standby = on
CONF
as_postgres "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" start -w >/dev/null
echo "primary on 5491, hot standby on 5492"
# Stay in the foreground while both run.
while as_postgres "$bin/pg_ctl" -D "$dir/primary" status >/dev/null; do
    sleep 1 &
    wait $! || true
done
