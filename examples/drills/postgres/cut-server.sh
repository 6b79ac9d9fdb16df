#!/bin/sh
# The power-cut drill's PostgreSQL server, on 127.0.0.1:5493, its data on an ext4 filesystem of
# its own: an image under the scratch directory on loop device 7:42, made here (what an earlier
# run left is removed first). The server then replaces this script, so that the workload's
# process tree is PostgreSQL's alone: the cut freezes and kills just it.
set -eu
here=$(dirname "$0")
. "$here/../lib.sh"
dir=$(scratch pgdisk)
bin=$(pg_bin)
umount "$dir/mnt" 2>/dev/null || true
losetup -j "$dir/disk.img" 2>/dev/null | cut -d: -f1 | xargs -r -n 1 losetup -d
losetup -d /dev/loop42 2>/dev/null || true
[ -b /dev/loop42 ] || mknod /dev/loop42 b 7 42
rm -f "$dir/disk.img" "$dir/acked" "$dir/server.log"
truncate -s 160M "$dir/disk.img"
losetup /dev/loop42 "$dir/disk.img"
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 /dev/loop42
mkdir -p "$dir/mnt"
mount /dev/loop42 "$dir/mnt"
mkdir "$dir/mnt/data"
chown postgres "$dir" "$dir/mnt/data"
# Without --no-sync: initdb syncs what it wrote, which a power cut later must not take.
as_postgres "$bin/initdb" --auth=trust --username=postgres -D "$dir/mnt/data" >/dev/null
cat >> "$dir/mnt/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 5493
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
# Synced too: unsynced, the cut leaves it torn (zeros at its end), and PostgreSQL then refuses
# to start, as the first run of this drill showed.
sync "$dir/mnt/data/postgresql.conf"
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$dir/mnt/data"
