//! The userspace half of `chaos delay`. The kernel stops a target process (SIGSTOP) as one of
//! its threads leaves a delayed syscall, notes it in the `DELAYED` map and says so through a
//! ring buffer; the resumer here sends SIGCONT when that stop's delay is up, on a thread of its
//! own woken by the ring buffer or its next due time (ppoll, nanosecond timeouts, 1 ns timer
//! slack). When the run ends, whatever is still stopped is resumed at once; if chaos dies, its
//! guard (`chaos pause-guard --delayed-fd`) resumes what the map holds.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData, RingBuf};
use chaos_common::{fault::DelayEvent, names};

use super::{RunError, errno::CallsLoaded};
use crate::{
    attach::AttachError,
    clock::monotonic_now_ns,
    pause::{self, GUARD_MAP_FD, Guard},
    report::Stopped,
    rng::{Rng, random_seed},
};

/// How long each stop lasts: `delay` ± `jitter`, uniform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelaySetting {
    pub delay: Duration,
    pub jitter: Duration,
}

impl DelaySetting {
    /// One stop's length, in ns.
    fn draw(self, rng: &mut Rng) -> u64 {
        let delay = self.delay.as_nanos() as u64;
        let jitter = self.jitter.as_nanos() as u64;
        if jitter == 0 {
            return delay;
        }
        // delay - jitter + [0, 2 * jitter]; the fault's check keeps jitter <= delay.
        delay - jitter + rng.next_u64() % (2 * jitter + 1)
    }
}

type Delayed = HashMap<MapData, u32, u64>;

/// The resumer of a delay run: its thread and the guard that outlives chaos.
pub struct Resumer {
    /// Written once to end the thread.
    stop: OwnedFd,
    thread: JoinHandle<Stopped>,
    _guard: Guard,
}

impl Resumer {
    /// Takes the delay maps out of `loaded`, starts the guard and the resumer's thread; to be
    /// called before any program attaches, so that no stop comes before either is there.
    pub fn start(loaded: &mut CallsLoaded<'_>, setting: DelaySetting) -> Result<Self, RunError> {
        let name = names::MAP_DELAY_EVENTS;
        let ring = RingBuf::try_from(loaded.take_map(name)?)
            .map_err(|source| AttachError::Map { name, source })?;
        let name = names::MAP_DELAYED;
        let Map::HashMap(data) = loaded.take_map(name)? else {
            return Err(AttachError::MissingMap(name).into());
        };
        let guard = pause::spawn_guard(
            vec!["--delayed-fd".into(), GUARD_MAP_FD.to_string()],
            Some(data.fd().as_fd()),
        )
        .map_err(|source| RunError::Target {
            what: "start the guard that resumes",
            source,
        })?;
        let delayed = Delayed::try_from(Map::HashMap(data))
            .map_err(|source| AttachError::Map { name, source })?;
        // SAFETY: eventfd(2) returns a new descriptor that this OwnedFd alone owns.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if stop == -1 {
            return Err(RunError::Hold(std::io::Error::last_os_error()));
        }
        // SAFETY: as above.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("chaos-resumer".into())
            .spawn(move || resume_loop(ring, delayed, setting, stop_fd))
            .map_err(RunError::Hold)?;
        Ok(Resumer {
            stop,
            thread,
            _guard: guard,
        })
    }

    /// Ends the thread, which resumes every process still stopped first; the stops' lengths.
    /// Call it once the programs are detached.
    pub fn finish(self) -> Stopped {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a local to the eventfd this owns.
        unsafe { libc::write(self.stop.as_raw_fd(), (&raw const one).cast(), 8) };
        self.thread.join().unwrap_or_default()
    }
}

/// The resumer's thread: until `stop` is written, reads the stops and resumes each when due.
fn resume_loop(
    mut ring: RingBuf<MapData>,
    mut delayed: Delayed,
    setting: DelaySetting,
    stop: RawFd,
) -> Stopped {
    // SAFETY: prctl on this thread with integer arguments: wake-ups as close to due as can be.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    let mut rng = Rng::new(random_seed());
    // (due, tgid, stopped at), earliest first.
    let mut due: BinaryHeap<Reverse<(u64, u32, u64)>> = BinaryHeap::new();
    let mut lengths = Vec::new();
    let ring_fd = ring.as_raw_fd();
    loop {
        let timeout = due.peek().map(|Reverse((at, ..))| {
            let ns = at.saturating_sub(monotonic_now_ns());
            libc::timespec {
                tv_sec: (ns / 1_000_000_000) as _,
                tv_nsec: (ns % 1_000_000_000) as _,
            }
        });
        let mut fds = [
            libc::pollfd {
                fd: ring_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: two pollfds we own, a timespec or null, no signal mask.
        unsafe { libc::ppoll(fds.as_mut_ptr(), 2, timeout_ptr, std::ptr::null()) };
        while let Some(item) = ring.next() {
            if let Some(event) = read_event(&item) {
                let length = setting.draw(&mut rng);
                due.push(Reverse((event.at_ns + length, event.tgid, event.at_ns)));
            }
        }
        let now = monotonic_now_ns();
        while let Some(&Reverse((at, tgid, stopped_at))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            resume(&mut delayed, tgid);
            lengths.push(monotonic_now_ns().saturating_sub(stopped_at));
        }
        if fds[1].revents != 0 {
            break;
        }
    }
    // The run is over: every stop ends now, whether it was due or not.
    while let Some(item) = ring.next() {
        if let Some(event) = read_event(&item) {
            due.push(Reverse((event.at_ns, event.tgid, event.at_ns)));
        }
    }
    let cut_short = due.len() as u64;
    for Reverse((_, tgid, _)) in due.drain() {
        resume(&mut delayed, tgid);
    }
    resume_all(&mut delayed);
    Stopped::of(lengths, cut_short)
}

fn read_event(item: &[u8]) -> Option<DelayEvent> {
    (item.len() >= size_of::<DelayEvent>())
        // SAFETY: the kernel wrote a DelayEvent there; read unaligned, as a copy.
        .then(|| unsafe { item.as_ptr().cast::<DelayEvent>().read_unaligned() })
}

/// Lets the kernel stop process `tgid` again, then resumes it: in this order, so that its
/// first call once resumed can be delayed (the other way round, a loop of fast calls makes
/// several before the entry is gone). The process is stopped in between, so none of its calls
/// can come between the two.
fn resume(delayed: &mut Delayed, tgid: u32) {
    let _ = delayed.remove(&tgid);
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(tgid as i32, libc::SIGCONT) };
}

/// Resumes every process the map holds.
fn resume_all(delayed: &mut Delayed) {
    let stopped: Vec<u32> = delayed.keys().filter_map(Result::ok).collect();
    for tgid in stopped {
        resume(delayed, tgid);
    }
}

/// The guard's work (`chaos pause-guard --delayed-fd FD`): resumes what the map at `fd` holds,
/// twice, the second time after a program that was running as chaos died has finished.
pub fn resume_left(fd: RawFd) {
    // SAFETY: the descriptor chaos handed this process, owned by nothing else here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let map = MapData::from_fd(fd)
        .map(Map::HashMap)
        .and_then(Delayed::try_from);
    let Ok(mut delayed) = map else {
        tracing::debug!("delay guard: not a map");
        return;
    };
    for _ in 0..2 {
        resume_all(&mut delayed);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_last_the_delay_give_or_take_the_jitter() {
        let mut rng = Rng::new(7);
        let exact = DelaySetting {
            delay: Duration::from_millis(50),
            jitter: Duration::ZERO,
        };
        assert_eq!(exact.draw(&mut rng), 50_000_000);
        let jittered = DelaySetting {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(50),
        };
        let draws: Vec<u64> = (0..1000).map(|_| jittered.draw(&mut rng)).collect();
        assert!(draws.iter().all(|&ns| ns <= 100_000_000));
        // Uniform over [0, 100 ms]: both halves drawn about as often.
        let low = draws.iter().filter(|&&ns| ns < 50_000_000).count();
        assert!((400..=600).contains(&low), "{low} of 1000 below the delay");
    }

    #[test]
    fn events_are_read_from_the_ring_buffer_bytes() {
        let event = DelayEvent {
            at_ns: 5,
            tgid: 42,
            tid: 43,
        };
        // SAFETY: a #[repr(C)] struct of integers, viewed as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const event).cast::<u8>(), size_of::<DelayEvent>())
        };
        assert_eq!(read_event(bytes), Some(event));
        assert_eq!(read_event(&bytes[..8]), None);
    }
}
