//! Syscall latency (`chaos delay`): a target's return from chosen syscalls comes later.

use std::time::Duration;

use chaos_common::{fault::CallFault, ops::OP_DELAY};

use super::{ParseError, When, ops::Op};

/// The shortest delay: below it the stop and the resume race (a resume that comes before the
/// stop cancels it), and timer wake-ups are of the same order.
pub const MIN_DELAY: Duration = Duration::from_millis(1);
/// The longest delay of one call.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Parses `--delay`: from [`MIN_DELAY`] to [`MAX_DELAY`].
pub fn parse_delay(s: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(s) {
        Ok(delay) if (MIN_DELAY..=MAX_DELAY).contains(&delay) => Ok(delay),
        _ => Err(ParseError::InvalidSyscallDelay(s.to_owned())),
    }
}

/// Parses `--jitter`: zero or more, at most [`MAX_DELAY`].
pub fn parse_jitter(s: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(s) {
        Ok(jitter) if jitter <= MAX_DELAY => Ok(jitter),
        _ => Err(ParseError::InvalidJitter(s.to_owned())),
    }
}

/// The syscalls a delay covers: named, or those of an operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Delayed {
    Syscalls(Vec<String>),
    Op(Op),
}

impl Delayed {
    /// The syscalls by name (what follows `sys_exit_`).
    pub fn syscalls(&self) -> Vec<String> {
        match self {
            Delayed::Syscalls(names) => names.clone(),
            Delayed::Op(op) => op.syscalls.iter().map(|&s| s.to_owned()).collect(),
        }
    }

    /// What the report calls it: the operation, or the syscalls.
    pub fn name(&self) -> String {
        match self {
            Delayed::Syscalls(names) => names.join(","),
            Delayed::Op(op) => op.name.to_owned(),
        }
    }
}

/// A delay fault: each covered return of a target from `delayed`'s syscalls comes `delay` ±
/// `jitter` (uniform) later.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayFault {
    pub delayed: Delayed,
    pub delay: Duration,
    pub jitter: Duration,
    pub dry_run: bool,
    pub when: When,
}

impl DelayFault {
    /// Checks what clap cannot: a jitter of at most the delay (no call waits less than 0).
    pub fn check(&self) -> Result<(), ParseError> {
        if self.jitter > self.delay {
            return Err(ParseError::JitterOverDelay {
                jitter: humantime::format_duration(self.jitter).to_string(),
                delay: humantime::format_duration(self.delay).to_string(),
            });
        }
        Ok(())
    }

    /// The fault as the kernel side reads it (the deadline is set when the run starts).
    pub fn kernel(&self) -> CallFault {
        self.when.kernel(1 << OP_DELAY, self.dry_run)
    }

    /// The delay in words: `50ms`, `50ms ± 10ms`.
    pub fn setting(&self) -> String {
        let delay = humantime::format_duration(self.delay);
        if self.jitter.is_zero() {
            delay.to_string()
        } else {
            format!("{delay} ± {}", humantime::format_duration(self.jitter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::parse_op;

    #[test]
    fn delays_and_jitters_parse_within_bounds() {
        assert_eq!(parse_delay("50ms"), Ok(Duration::from_millis(50)));
        for bad in ["0s", "500us", "2h", "soon"] {
            assert_eq!(
                parse_delay(bad),
                Err(ParseError::InvalidSyscallDelay(bad.into()))
            );
        }
        assert_eq!(parse_jitter("0s"), Ok(Duration::ZERO));
        assert!(parse_jitter("2h").is_err());
    }

    #[test]
    fn the_jitter_stays_within_the_delay() {
        let fault = |jitter| DelayFault {
            delayed: Delayed::Op(parse_op("read").unwrap()),
            delay: Duration::from_millis(10),
            jitter,
            dry_run: false,
            when: When::default(),
        };
        assert_eq!(fault(Duration::from_millis(10)).check(), Ok(()));
        assert_eq!(fault(Duration::from_millis(10)).setting(), "10ms ± 10ms");
        let err = fault(Duration::from_millis(11)).check().unwrap_err();
        assert!(err.to_string().contains("11ms"), "{err}");
        assert_eq!(
            fault(Duration::ZERO).delayed.syscalls(),
            ["read", "readv", "pread64", "preadv", "preadv2"]
        );
    }
}
