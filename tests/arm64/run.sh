#!/bin/busybox sh
# The arm64 guest's /init: Debian's arm64 busybox and the static aarch64 chaos, nothing else.
# Each check prints "ARM64-CHECK NAME ok" or "ARM64-CHECK NAME FAIL why"; the runner
# (cargo xtask arm64) fails unless every check passes and "ARM64-DONE" comes.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ip link set lo up
# What TC faults need where the kernel has them as modules (6.1's clsact; 6.12's are .ko.xz and
# unused: tcx is built in).
for module in sch_ingress cls_bpf sch_fq; do
    file=/lib/modules/$(uname -r)/kernel/net/sched/$module.ko
    [ -f "$file" ] && insmod "$file"
done
echo "arm64 guest: $(uname -r) $(uname -m)"

check() { # NAME CONDITION-TEXT: the condition's exit status decides
    name=$1
    shift
    if eval "$@"; then echo "ARM64-CHECK $name ok"; else echo "ARM64-CHECK $name FAIL: $*"; fi
}
count() { grep -c "$1" "$2" 2>/dev/null || true; }
# A loop making CALL every 0.1 s with its errors in LOG; its PID is $!. The loop opens its
# files once, before any fault: an open fault fails every later open() of the target's.
loop() { (exec </dev/null 2>>"$2"; while :; do eval "$1"; sleep 0.1; done) & }

/chaos --version | tee /tmp/version
check version 'grep -q "^chaos " /tmp/version'
/chaos probe > /tmp/probe 2>&1
cat /tmp/probe
check probe-btf 'grep -q "^btf  *yes" /tmp/probe'
check probe-cgroup 'grep -q "^cgroup-sock-addr  *yes" /tmp/probe'

# connect(): the target's fail with the errno asked for, a bystander's as before (refused).
loop 'nc 127.0.0.1 9' /tmp/c-target; T=$!
loop 'nc 127.0.0.1 9' /tmp/c-bystander; B=$!
sleep 0.5
/chaos fail --pid-tree $T --op connect --errno EHOSTUNREACH --for 4s --json > /tmp/c.json
check connect-exit "[ $? = 0 ]"
cat /tmp/c.json
check connect-report 'grep -q "\"mechanism\":\"cgroup\"" /tmp/c.json && grep -q "\"injected\":[1-9]" /tmp/c.json'
check connect-target '[ "$(count "No route to host" /tmp/c-target)" -ge 1 ]'
check connect-bystander '[ "$(count "No route to host" /tmp/c-bystander)" = 0 ] && [ "$(count refused /tmp/c-bystander)" -ge 1 ]'
kill $T $B

# open() through the BPF LSM where trampolines attach (arm64 >= 6.4): the target's fail, a
# bystander's read the file. Elsewhere chaos refuses, exit 2, naming what is missing.
echo data > /tmp/file
loop 'cat /tmp/file >/dev/null' /tmp/o-target; T=$!
loop 'cat /tmp/file >/dev/null' /tmp/o-bystander; B=$!
sleep 0.5
/chaos fail --pid-tree $T --op open --errno EACCES --for 4s --json > /tmp/o.json 2>/tmp/o.err
status=$?
cat /tmp/o.json /tmp/o.err
if grep -q "^trampoline  *yes" /tmp/probe; then
    check open-exit "[ $status = 0 ]"
    check open-report 'grep -q "\"mechanism\":\"lsm\"" /tmp/o.json && grep -q "\"injected\":[1-9]" /tmp/o.json'
    check open-target '[ "$(count "Permission denied" /tmp/o-target)" -ge 1 ]'
    # The rung of nodes whose LSM list lacks bpf (Ubuntu, RHEL, Amazon Linux): fmod_ret on
    # security_file_open, which attaches whatever the list.
    : > /tmp/o-target
    /chaos fail --pid-tree $T --op open --errno EACCES --backend fmod_ret --for 3s --json > /tmp/of.json
    check open-fmod-ret-exit "[ $? = 0 ]"
    cat /tmp/of.json
    check open-fmod-ret-report 'grep -q "\"mechanism\":\"fmod_ret\"" /tmp/of.json && grep -q "\"injected\":[1-9]" /tmp/of.json'
    check open-fmod-ret-target '[ "$(count "Permission denied" /tmp/o-target)" -ge 1 ]'
else
    check open-refused "[ $status = 2 ] && grep -q '6.4' /tmp/o.err"
    check open-target-untouched '[ ! -s /tmp/o-target ]'
    check open-nothing-left '[ -z "$(ls /sys/fs/bpf)" ]'
fi
check open-bystander '[ ! -s /tmp/o-bystander ]'
kill $T $B

# SIGKILL at fsync() (fentry on __arm64_sys_fsync): the target's sync dies, a bystander's not.
loop 'sync /tmp/file || echo "status $?" >&2' /tmp/s-target; T=$!
loop 'sync /tmp/file || echo "status $?" >&2' /tmp/s-bystander; B=$!
sleep 0.5
/chaos signal --pid-tree $T --syscall fsync --signal KILL --count 1 --for 4s --json > /tmp/s.json
check signal-exit "[ $? = 0 ]"
cat /tmp/s.json
# fentry where trampolines attach, else the syscall's tracepoint.
mechanism=tracepoint
grep -q "^trampoline  *yes" /tmp/probe && mechanism=fentry
check signal-report 'grep -q "\"mechanism\":\"$mechanism\"" /tmp/s.json && grep -q "\"injected\":1" /tmp/s.json'
check signal-target 'grep -q "status 137" /tmp/s-target'
check signal-bystander '[ ! -s /tmp/s-bystander ]'
kill $T $B

# fsync() 1 s late (fexit on __arm64_sys_fsync where trampolines attach, else the exit
# tracepoint): in 4 s the target's loop gets through at most half the bystander's rounds
# (four delayed ones, plus those made before the delay is live: several where the emulator
# shares its core and chaos takes seconds to start).
loop 'sync /tmp/file; echo round >&2' /tmp/d-target; T=$!
loop 'sync /tmp/file; echo round >&2' /tmp/d-bystander; B=$!
sleep 0.5
: > /tmp/d-target
: > /tmp/d-bystander
/chaos delay --pid-tree $T --syscall fsync --delay 1s --for 4s --json > /tmp/d.json
check delay-exit "[ $? = 0 ]"
target=$(count round /tmp/d-target)
bystander=$(count round /tmp/d-bystander)
kill $T $B
cat /tmp/d.json
echo "delay: target $target rounds, bystander $bystander"
mechanism=tracepoint
grep -q "^trampoline  *yes" /tmp/probe && mechanism=fexit
check delay-report 'grep -q "\"mechanism\":\"$mechanism\"" /tmp/d.json && grep -q "\"injected\":[1-9]" /tmp/d.json'
check delay-rounds '[ "$target" -ge 1 ] && [ $((target * 2)) -le "$bystander" ]'

# Packets: ICMP dropped as it arrives on lo (tcx on 6.12, clsact on 6.1) while TCP to a closed
# port is still refused at once; once the run ends, ping answers again. The three pings start
# once one is lost (the drop is live, however long chaos took to start) and end within 4 s.
/chaos net drop --iface lo --proto icmp --probability 1 --for 10s --json > /tmp/n.json & N=$!
for _ in 1 2 3 4 5 6; do ping -c 1 -W 1 127.0.0.1 > /dev/null || break; sleep 0.2; done
ping -c 3 -W 1 127.0.0.1 > /tmp/n-ping 2>&1
nc 127.0.0.1 9 < /dev/null > /tmp/n-tcp 2>&1
wait $N
check net-exit "[ $? = 0 ]"
cat /tmp/n.json /tmp/n-ping /tmp/n-tcp
check net-dropped 'grep -q " 0 packets received" /tmp/n-ping && grep -q "\"injected\":[1-9]" /tmp/n.json'
check net-bystander 'grep -q refused /tmp/n-tcp'
check net-undone 'ping -c 1 -W 2 127.0.0.1 > /dev/null'

# A SIGKILLed loader leaves nothing: the target's connect() is refused as before.
loop 'nc 127.0.0.1 9' /tmp/k-target; T=$!
/chaos fail --pid-tree $T --op connect --errno EHOSTUNREACH --for 1h > /dev/null 2>&1 & C=$!
sleep 3
kill -9 $C
sleep 0.5
: > /tmp/k-target
sleep 1
check sigkill-undone '[ "$(count "No route to host" /tmp/k-target)" = 0 ] && [ "$(count refused /tmp/k-target)" -ge 1 ]'
kill $T

echo ARM64-DONE
poweroff -f
