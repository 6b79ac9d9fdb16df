#!/bin/sh
# The drill's resolver: unbound in network namespace drill-dns, at 10.202.0.2:53 on the far end
# of a veth pair, answering for drill.test from its own data (db.drill.test, cache.drill.test).
# Runs in the foreground; when it ends (SIGTERM from chaos run included) the namespace goes.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch dns)
cleanup() {
    stop_pidfile "$dir/unbound.pid"
    wait
    netns_down drill-dns
}
trap cleanup EXIT
trap 'exit 0' TERM INT HUP
netns_up drill-dns 10.202.0
sed "s|@DIR@|$dir|g" "$here/unbound.conf" > "$dir/unbound.conf"
ip netns exec drill-dns unbound -d -c "$dir/unbound.conf" &
wait $!
