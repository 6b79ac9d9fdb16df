//! The clock the kernel side checks deadlines against, and a run's deadline on it.

use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_now_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC) as u64
}

/// The [`Instant`](std::time::Instant) at which `CLOCK_MONOTONIC` read `ns` (in this or another
/// process: the clock is the system's); now for a time not yet come or a zero.
pub fn instant_of(ns: u64) -> std::time::Instant {
    let now = std::time::Instant::now();
    if ns == 0 {
        return now;
    }
    let ago = Duration::from_nanos(monotonic_now_ns().saturating_sub(ns));
    now.checked_sub(ago).unwrap_or(now)
}

/// `clock` now, in nanoseconds.
pub fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut now) };
    now.tv_sec * 1_000_000_000 + now.tv_nsec
}

/// When a run ends, on `CLOCK_MONOTONIC`: computed once, as the fault is armed (every program
/// attached, so the live window is the whole `--for`), and used by the kernel side, the
/// loader's hold and a detached run's record alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub ns: u64,
}

impl Deadline {
    /// `lifetime` from now.
    pub fn after(lifetime: Duration) -> Self {
        let lifetime = u64::try_from(lifetime.as_nanos()).unwrap_or(u64::MAX);
        Deadline {
            ns: monotonic_now_ns().saturating_add(lifetime),
        }
    }

    /// How long until it passes; zero once it has.
    pub fn remaining(self) -> Duration {
        Duration::from_nanos(self.ns.saturating_sub(monotonic_now_ns()))
    }

    pub fn passed(self) -> bool {
        self.ns <= monotonic_now_ns()
    }
}
