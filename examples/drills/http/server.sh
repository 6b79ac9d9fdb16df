#!/bin/sh
# The drill's web server: nginx in network namespace drill-http, at 10.201.0.2:8080 on the far
# end of a veth pair. Runs in the foreground; when it ends (SIGTERM from chaos run included) the
# server stops and the namespace goes.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch http)
cleanup() {
    stop_pidfile "$dir/nginx.pid"
    wait
    netns_down drill-http
}
trap cleanup EXIT
trap 'exit 0' TERM INT HUP
netns_up drill-http 10.201.0
mkdir -p "$dir/tmp" "$dir/www"
head -c 8192 /dev/zero | tr '\0' x > "$dir/www/index.html"
rm -f "$dir/load.jsonl" "$dir/fuzz.jsonl"
sed "s|@DIR@|$dir|g" "$here/nginx.conf" > "$dir/nginx.conf"
ip netns exec drill-http nginx -c "$dir/nginx.conf" -p "$dir" &
wait $!
