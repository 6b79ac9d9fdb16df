#!/bin/sh
# chaos-vm stage 1 (runs from the initramfs, busybox only)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1

fail() {
    echo "chaos-vm init: $*"
    echo "CHAOS-VM-EXIT=125"
    poweroff -f
    echo o > /proc/sysrq-trigger
    sleep 10
}

# A stock kernel has virtio, 9p and overlayfs as modules: load them first.
while read -r module; do
    insmod "/modules/$module" || fail "cannot load $module"
done < /modules/order

cache=loose
msize=512000
for w in $(cat /proc/cmdline); do
    case $w in
        chaosvm.cache=*) cache=${w#*=} ;;
        chaosvm.msize=*) msize=${w#*=} ;;
    esac
done
p9=trans=virtio,version=9p2000.L,msize=$msize

mount -t 9p -o "$p9,ro,cache=$cache" hostroot /lower || fail "cannot mount 9p hostroot"
mount -t tmpfs -o mode=0755 rw /rw || fail "cannot mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "cannot mount overlay"

mkdir -p /newroot/scratch /newroot/.chaos-vm/ctl
cp /bin/busybox /stage2 /newroot/.chaos-vm/
mount -t 9p -o "$p9" scratch /newroot/scratch || fail "cannot mount 9p scratch"
mount -t 9p -o "$p9" chaosctl /newroot/.chaos-vm/ctl || fail "cannot mount 9p chaosctl"

mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /.chaos-vm/busybox sh /.chaos-vm/stage2
