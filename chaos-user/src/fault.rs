//! The typed fault model and its parsing: what to fail, and how.

use std::{fmt, str::FromStr, time::Duration};

use chaos_common::errno::{OP_CONNECT, OP_OPEN};
use thiserror::Error;

use crate::errno_names;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unknown operation '{0}': expected one of {ops}", ops = Op::names().join(", "))]
    UnknownOp(String),
    #[error(
        "unknown errno '{0}': expected a name such as EIO or ECONNREFUSED, or a number from 1 to 4095"
    )]
    UnknownErrno(String),
    #[error("errno {0} is out of range: expected a number from 1 to 4095, or a name such as EIO")]
    ErrnoOutOfRange(i64),
    #[error("invalid duration '{0}': expected a positive duration such as 30s, 1m30s or 250ms")]
    InvalidDuration(String),
    #[error("invalid PID '{0}': expected a process ID greater than 0")]
    InvalidPid(String),
}

/// An operation an errno fault can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `open()`, `openat()`, `openat2()`, `creat()`: the `file_open` LSM hook.
    Open,
    /// `connect()` on IPv4 and IPv6 sockets: cgroup sock_addr hooks.
    Connect,
}

impl Op {
    pub const ALL: [Op; 2] = [Op::Open, Op::Connect];

    pub const fn name(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Connect => "connect",
        }
    }

    /// The operation number the eBPF side uses (`chaos_common::errno::OP_*`).
    pub const fn code(self) -> u32 {
        match self {
            Op::Open => OP_OPEN,
            Op::Connect => OP_CONNECT,
        }
    }

    /// The kernel mechanism that fails this operation, as reports name it.
    pub const fn mechanism(self) -> Mechanism {
        match self {
            Op::Open => Mechanism::Lsm,
            Op::Connect => Mechanism::CgroupSockAddr,
        }
    }

    fn names() -> Vec<&'static str> {
        Op::ALL.iter().map(|op| op.name()).collect()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseError::UnknownOp(s.to_owned()))
    }
}

/// How the kernel is made to fail a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// A BPF LSM program returns the errno (needs trampoline programs).
    Lsm,
    /// A cgroup sock_addr program denies the call and sets the errno with `bpf_set_retval`.
    CgroupSockAddr,
}

impl Mechanism {
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::CgroupSockAddr => "cgroup-sock-addr",
        }
    }
}

/// A positive errno value, parsed from a name (`EIO`) or a number (`5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(i32);

impl Errno {
    /// Linux reserves the top 4095 values of a return for errors.
    const MAX: i64 = 4095;

    pub const fn get(self) -> i32 {
        self.0
    }

    /// An errno the kernel returned; trusted to be in range.
    pub const fn from_raw(errno: i32) -> Self {
        Errno(errno)
    }
}

impl FromStr for Errno {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(number) = s.parse::<i64>() {
            return if (1..=Errno::MAX).contains(&number) {
                Ok(Errno(number as i32))
            } else {
                Err(ParseError::ErrnoOutOfRange(number))
            };
        }
        errno_names::number(s)
            .map(Errno)
            .ok_or_else(|| ParseError::UnknownErrno(s.to_owned()))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match errno_names::name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Parses a run duration: positive, humantime syntax (`30s`, `1m30s`, `250ms`).
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(s) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(ParseError::InvalidDuration(s.to_owned())),
    }
}

/// Parses a PID: a positive integer.
pub fn parse_pid(s: &str) -> Result<u32, ParseError> {
    match s.parse::<u32>() {
        Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Ok(pid),
        _ => Err(ParseError::InvalidPid(s.to_owned())),
    }
}

/// An errno fault: the listed operations of the targets fail with `errno`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrnoFault {
    pub ops: Vec<Op>,
    pub errno: Errno,
    /// Count matching calls but fail none.
    pub dry_run: bool,
}

impl ErrnoFault {
    /// The `ops` bit mask the eBPF side reads.
    pub fn op_mask(&self) -> u64 {
        self.ops.iter().fold(0, |mask, op| mask | 1 << op.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_by_name_and_number() {
        assert_eq!("EIO".parse(), Ok(Errno(libc::EIO)));
        assert_eq!("econnrefused".parse(), Ok(Errno(libc::ECONNREFUSED)));
        assert_eq!("5".parse(), Ok(Errno(5)));
        assert_eq!("4095".parse(), Ok(Errno(4095)));
    }

    #[test]
    fn bad_errnos_are_named() {
        assert_eq!(
            "EFOO".parse::<Errno>(),
            Err(ParseError::UnknownErrno("EFOO".into()))
        );
        assert_eq!("0".parse::<Errno>(), Err(ParseError::ErrnoOutOfRange(0)));
        assert_eq!("-5".parse::<Errno>(), Err(ParseError::ErrnoOutOfRange(-5)));
        assert_eq!(
            "4096".parse::<Errno>(),
            Err(ParseError::ErrnoOutOfRange(4096))
        );
        let message = ParseError::UnknownErrno("EFOO".into()).to_string();
        assert!(
            message.contains("EFOO") && message.contains("EIO"),
            "{message}"
        );
    }

    #[test]
    fn errno_displays_its_name() {
        assert_eq!(Errno(libc::EIO).to_string(), "EIO");
        assert_eq!(Errno(4000).to_string(), "4000");
    }

    #[test]
    fn ops_parse_and_reject_unknown() {
        assert_eq!("open".parse(), Ok(Op::Open));
        assert_eq!("CONNECT".parse(), Ok(Op::Connect));
        let err = "frobnicate".parse::<Op>().unwrap_err().to_string();
        assert!(
            err.contains("frobnicate") && err.contains("open, connect"),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "0s", "-1s", "soon", ""] {
            assert_eq!(
                parse_duration(bad),
                Err(ParseError::InvalidDuration(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("42"), Ok(42));
        for bad in ["0", "-3", "x", "4294967295"] {
            assert_eq!(
                parse_pid(bad),
                Err(ParseError::InvalidPid(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn op_mask_sets_one_bit_per_op() {
        let fault = ErrnoFault {
            ops: vec![Op::Open, Op::Connect],
            errno: Errno(5),
            dry_run: false,
        };
        assert_eq!(fault.op_mask(), 1 << OP_OPEN | 1 << OP_CONNECT);
    }
}
