# Shared by the drills' scripts (sourced): a scratch directory and a network namespace at the
# far end of a veth pair, made idempotently and removed again.

# The drill's scratch directory: $CHAOS_DRILL_DIR, or one per drill under /tmp.
scratch() {
    dir=${CHAOS_DRILL_DIR:-/tmp/chaos-drill-$1}
    mkdir -p "$dir"
    echo "$dir"
}

# netns_up NAME PREFIX: namespace NAME holding veth "NAME-in" at PREFIX.2/24, its peer "NAME-out"
# at PREFIX.1/24 here. What an earlier run left is removed first.
netns_up() {
    netns_down "$1"
    ip netns add "$1"
    ip link add "$1-out" type veth peer name "$1-in" netns "$1"
    ip addr add "$2.1/24" dev "$1-out"
    ip link set "$1-out" up
    ip -n "$1" addr add "$2.2/24" dev "$1-in"
    ip -n "$1" link set "$1-in" up
    ip -n "$1" link set lo up
}

netns_down() {
    ip link del "$1-out" 2>/dev/null || true
    ip netns del "$1" 2>/dev/null || true
}

# stop_pidfile FILE [SIGNAL]: ends the process FILE names, if it still runs, with SIGNAL (TERM
# unless given). The caller waits for its children: a server left unwaited stays a zombie where
# PID 1 does not reap.
stop_pidfile() {
    if [ -s "$1" ]; then
        kill -"${2:-TERM}" "$(cat "$1")" 2>/dev/null || true
    fi
}

# The newest installed PostgreSQL's programs.
pg_bin() {
    ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}

# Runs a program as user postgres. setpriv execs it (runuser would stay between, and SIGKILL a
# server 2 s after a SIGTERM, leaving its children behind).
as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
}

# count_acked DIR PORT [SECONDS]: sets $acked to how many commits DIR/acked lists and $present to
# how many of them the PostgreSQL on PORT has (empty when it does not answer within SECONDS,
# default 5: a steady-state check has 10), both from one read of the list, which the application
# keeps appending to.
count_acked() {
    list=$(cat "$1/acked" 2>/dev/null)
    acked=$(printf '%s' "$list" | grep -c .)
    present=
    [ "$acked" -gt 0 ] || return 0
    present=$(PGCONNECT_TIMEOUT="${3:-5}" timeout "${3:-5}" psql -h 127.0.0.1 -p "$2" -U postgres -Atq -c \
        "SELECT count(*) FROM drill WHERE n IN ($(printf '%s\n' "$list" | paste -sd,))" 2>/dev/null)
}
