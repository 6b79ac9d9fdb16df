//! Clock skew (`chaos clock`): what a target reads from chosen clocks is shifted.

use std::{fmt, time::Duration};

use chaos_common::{
    fault::{
        CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM, CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE,
        CLOCK_MONOTONIC_RAW, CLOCK_REALTIME, CLOCK_REALTIME_ALARM, CLOCK_REALTIME_COARSE,
        CLOCK_TAI, CallFault, ClockFilter,
    },
    ops::OP_CLOCK,
};

use super::{ParseError, When};

/// The largest shift: a century either way.
pub const MAX_OFFSET: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A shift of the clock: forward, or back with `back`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    pub by: Duration,
    pub back: bool,
}

impl Offset {
    /// As whole seconds (negative when back) and nanoseconds in `0..1e9`, as the kernel side
    /// adds it.
    pub fn split(self) -> (i64, u32) {
        let (sec, nsec) = (self.by.as_secs() as i64, self.by.subsec_nanos());
        match (self.back, nsec) {
            (false, _) => (sec, nsec),
            (true, 0) => (-sec, 0),
            (true, _) => (-sec - 1, 1_000_000_000 - nsec),
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.back { '-' } else { '+' };
        write!(f, "{sign}{}", humantime::format_duration(self.by))
    }
}

/// Parses `--offset`: `+1h`, `-90s`, `2d` (forward), from 1ns to [`MAX_OFFSET`] either way.
pub fn parse_offset(s: &str) -> Result<Offset, ParseError> {
    let (back, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    match humantime::parse_duration(rest) {
        Ok(by) if !by.is_zero() && by <= MAX_OFFSET => Ok(Offset { by, back }),
        _ => Err(ParseError::InvalidClockOffset(s.to_owned())),
    }
}

/// A clock `--clock` names, with the clock IDs it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Clock {
    /// The wall clock: CLOCK_REALTIME and its coarse, alarm and TAI forms, gettimeofday(),
    /// time().
    Realtime,
    /// CLOCK_MONOTONIC and its raw and coarse forms.
    Monotonic,
    /// CLOCK_BOOTTIME and its alarm form.
    Boottime,
}

impl Clock {
    fn ids(self) -> &'static [u32] {
        match self {
            Clock::Realtime => &[
                CLOCK_REALTIME,
                CLOCK_REALTIME_COARSE,
                CLOCK_REALTIME_ALARM,
                CLOCK_TAI,
            ],
            Clock::Monotonic => &[CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC_COARSE],
            Clock::Boottime => &[CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Clock::Realtime => "realtime",
            Clock::Monotonic => "monotonic",
            Clock::Boottime => "boottime",
        }
    }
}

/// A clock fault: what targets read from `clocks` comes `offset` shifted.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockFault {
    pub offset: Offset,
    pub clocks: Vec<Clock>,
    pub dry_run: bool,
    pub when: When,
}

impl ClockFault {
    /// The fault as the kernel side reads it (the deadline is set when the run starts).
    pub fn kernel(&self) -> CallFault {
        self.when.kernel(1 << OP_CLOCK, self.dry_run)
    }

    /// The shift and the clocks, as the programs read them (the struct offsets are the
    /// kernel's, added by [`crate::kernel::clock_filter`]).
    pub fn filter(&self) -> ClockFilter {
        let (offset_sec, offset_nsec) = self.offset.split();
        ClockFilter {
            offset_sec,
            offset_nsec,
            clocks: self
                .clocks
                .iter()
                .flat_map(|clock| clock.ids())
                .fold(0, |mask, id| mask | 1 << id),
            ..ClockFilter::default()
        }
    }

    /// The shift in words: `+1day (realtime)`.
    pub fn setting(&self) -> String {
        let clocks: Vec<_> = self.clocks.iter().map(|clock| clock.name()).collect();
        format!("{} ({})", self.offset, clocks.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_with_a_sign_or_none() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            parse_offset("+1h"),
            Ok(Offset {
                by: hour,
                back: false
            })
        );
        assert_eq!(
            parse_offset("1h"),
            Ok(Offset {
                by: hour,
                back: false
            })
        );
        assert_eq!(
            parse_offset("-1h"),
            Ok(Offset {
                by: hour,
                back: true
            })
        );
        for bad in ["0s", "-0s", "+", "soon", "200years", "--1h"] {
            let err = parse_offset(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn a_shift_back_splits_into_seconds_back_and_nanoseconds_forward() {
        let split = |s| parse_offset(s).unwrap().split();
        assert_eq!(split("+1s 250ms"), (1, 250_000_000));
        assert_eq!(split("-1s 250ms"), (-2, 750_000_000));
        assert_eq!(split("-3s"), (-3, 0));
        assert_eq!(split("+1d"), (86_400, 0));
    }

    #[test]
    fn clocks_cover_their_forms() {
        let fault = |clocks| ClockFault {
            offset: parse_offset("1h").unwrap(),
            clocks,
            dry_run: false,
            when: When::default(),
        };
        let realtime = fault(vec![Clock::Realtime]).filter();
        assert_eq!(realtime.clocks, 1 | 1 << 5 | 1 << 8 | 1 << 11);
        let both = fault(vec![Clock::Monotonic, Clock::Boottime]);
        assert_eq!(
            both.filter().clocks,
            1 << 1 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 9
        );
        assert_eq!(both.setting(), "+1h (monotonic, boottime)");
    }
}
