# chaos-vm stage 2: PID 1 inside the overlay root (host / read-only + tmpfs upper)
# run as: /.chaos-vm/busybox sh /.chaos-vm/stage2
bb=/.chaos-vm/busybox
ctl=/.chaos-vm/ctl
m() { $bb mkdir -p "$4" && $bb mount -t "$1" -o "$2" "$3" "$4" || echo "chaos-vm: mount $1 on $4 failed"; }
# /tmp stays part of the overlay: the host's /tmp (where a checkout may live) stays visible.
m tmpfs mode=0755 run /run
m devpts gid=5,mode=620,ptmxmode=666 devpts /dev/pts
m tmpfs mode=1777 shm /dev/shm
m securityfs rw securityfs /sys/kernel/security
m debugfs rw debugfs /sys/kernel/debug
m tracefs rw tracefs /sys/kernel/tracing
m bpf mode=0700 bpf /sys/fs/bpf
m cgroup2 nsdelegate cgroup2 /sys/fs/cgroup
$bb mkdir -p /run/netns /run/lock
# A stock kernel's module tree (extracted on the host) where modprobe looks for it.
for w in $($bb cat /proc/cmdline); do
    case $w in
        chaosvm.modules=*)
            modules=/lib/modules/$($bb uname -r)
            $bb mkdir -p "$modules" && $bb mount --bind "${w#*=}" "$modules" \
                || echo "chaos-vm: cannot mount the module tree ${w#*=}"
            ;;
    esac
done
$bb ln -sf /proc/self/fd /dev/fd 2>/dev/null
$bb ip link set lo up
$bb hostname chaos-vm
$bb stty -F /dev/console -onlcr 2>/dev/null   # plain \n on the console

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
cd /
# The command script runs under the host's /bin/sh, NOT busybox sh: Debian's busybox is built
# with "prefer applets", so under it `ip`, `ls`, `sh`... would all be busybox applets.
sh=/bin/sh; [ -x $sh ] || sh="$bb sh"
$sh $ctl/cmd.sh </dev/null
rc=$?
echo "$rc" > $ctl/status
printf "\nCHAOS-VM-EXIT=%s\n" "$rc"   # own line even if output lacked a final newline
$bb sync
$bb poweroff -f
echo o > /proc/sysrq-trigger
$bb sleep 10
