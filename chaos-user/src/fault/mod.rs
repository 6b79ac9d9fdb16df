//! The typed fault model and its parsing: what to fail, and how. One module per kind of fault
//! ([`errno`], [`signal`], [`net`]); [`ops`] is the operation catalogue as the command line and
//! the planner read it. What every kind shares is here: the parse errors, durations, ports,
//! networks, and which of the covered calls a fault acts on ([`When`]).

use std::{fmt, net::IpAddr, time::Duration};

use chaos_common::fault::{CallFault, PROBABILITY_ONE};
use thiserror::Error;

pub mod clock;
pub mod delay;
pub mod disk;
pub mod errno;
pub mod net;
pub mod ops;
pub mod signal;

pub use errno::{
    Errno, ErrnoFault, InjectionKind, KernelFn, PathFilter, SocketFilter, parse_family,
    parse_kernel_fn, parse_path_filter,
};
pub use ops::{BackendChoice, Op, parse_op};
pub use signal::{Signal, SignalFault, parse_syscall};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unknown operation '{0}': expected one of {ops}", ops = ops::names().join(", "))]
    UnknownOp(String),
    #[error(
        "unknown errno '{0}': expected a name such as EIO or ECONNREFUSED, or a number from 1 to 4095"
    )]
    UnknownErrno(String),
    #[error(
        "errno {0} is internal to the kernel (ERESTARTSYS and the codes after it, 512-531), which restarts the call or hides it; expected a number from 1 to 4095 outside 512-531, or a name such as EIO"
    )]
    KernelInternalErrno(i64),
    #[error("errno {0} is out of range: expected a number from 1 to 4095, or a name such as EIO")]
    ErrnoOutOfRange(i64),
    #[error(
        "invalid duration '{0}': expected a positive duration of at most 365 days, such as 30s, 1m30s or 250ms"
    )]
    InvalidDuration(String),
    #[error("invalid PID '{0}': expected a process ID greater than 0")]
    InvalidPid(String),
    #[error(
        "--for {duration} is too long for the monkey's mean_interval of {mean}: about {expected} picks, at most {max}; expected a shorter --for or a longer mean_interval"
    )]
    MonkeyDayTooLong {
        duration: String,
        mean: String,
        expected: u64,
        max: u64,
    },
    #[error("unknown backend '{0}': expected auto, {mechanisms}", mechanisms = ops::mechanism_names().join(", "))]
    UnknownBackend(String),
    #[error(
        "invalid probability '{0}': expected a number greater than 0 and at most 1, such as 0.1"
    )]
    InvalidProbability(String),
    #[error("invalid count '{0}': expected a whole number of at least 1")]
    InvalidCount(String),
    #[error(
        "unknown signal '{0}': expected a name such as KILL, SIGSTOP, SEGV, ABRT, or a number from 1 to 31"
    )]
    UnknownSignal(String),
    #[error("invalid syscall name '{0}': expected a name such as fsync, write or openat")]
    InvalidSyscall(String),
    #[error(
        "invalid kernel function name '{0}': expected a name such as should_failslab (see /sys/kernel/debug/error_injection/list)"
    )]
    InvalidKernelFn(String),
    #[error(
        "--errno is missing: --op and --syscall fail calls with an errno (EIO, ECONNREFUSED, a number)"
    )]
    NoErrno,
    #[error(
        "{filter} cannot be combined with {flag}: its kprobe sees no socket address and no file, so no call would match (run the filtered --op as a fault of its own)"
    )]
    FilterWithOverride { flag: &'static str, filter: String },

    #[error("invalid port '{0}': expected a number from 1 to 65535")]
    InvalidPort(String),
    #[error("unknown family '{0}': expected inet, inet6 or unix")]
    UnknownFamily(String),
    #[error(
        "invalid address '{0}': expected an IPv4 or IPv6 address or network, such as 10.0.0.5, 10.0.0.0/8 or 2001:db8::/32"
    )]
    InvalidAddr(String),
    #[error("{filter} {what}; --op {op} cannot take it (the operations that can: {accepted})")]
    FilterNotApplicable {
        filter: &'static str,
        what: &'static str,
        op: &'static str,
        accepted: String,
    },
    #[error(
        "--{filter} cannot be combined with --family unix: UNIX sockets have no ports or IP addresses"
    )]
    NotForUnix { filter: &'static str },
    #[error(
        "invalid device '{0}': {1}; expected a block device such as /dev/sdb or /dev/loop0, or MAJOR:MINOR such as 7:0 (see lsblk)"
    )]
    InvalidDevice(String, String),
    #[error(
        "device {0} carries this machine's root filesystem: failing it fails every process's writes, chaos's own too; give --force to do it anyway"
    )]
    RootDevice(String),
    #[error("unknown disk operation '{0}': expected read, write, flush or discard")]
    UnknownDiskOp(String),
    #[error(
        "invalid sectors '{0}': expected FIRST-LAST (512-byte sectors from the start of the device, FIRST <= LAST) or one sector"
    )]
    InvalidSectors(String),
    #[error("'{0}' injects no fault")]
    NotAFault(String),
    #[error(
        "--backend {0} cannot fail a kernel function: --syscall, --kernel-fn and disk faults fail through fmod_ret or kprobe-override (or --backend auto)"
    )]
    BackendNotOverriding(&'static str),
    #[error("--backend {backend} cannot fail --op {op}: it has {has}")]
    BackendNotOffered {
        backend: &'static str,
        op: &'static str,
        has: String,
    },
    #[error(
        "--backend {backend} cannot honour {filter} for --op {op}: its hooks do not see it; {can} can (or --backend auto)"
    )]
    BackendFilter {
        backend: &'static str,
        op: &'static str,
        filter: &'static str,
        can: String,
    },
    #[error(
        "--cgroup takes only `chaos net drop --direction ingress`: a cgroup_skb program can drop what arrives for a cgroup's sockets, while its egress drops are reported to the sender and it can neither copy nor rewrite packets; use --iface, --netns or --container for those"
    )]
    CgroupNetIngressDropOnly,
    #[error(
        "--delay {delay} with --jitter {jitter} reaches past {horizon:?}, the fq qdisc's horizon (fq drops packets timed later): expected a delay plus 4 x jitter of at most that"
    )]
    DelayPastHorizon {
        delay: String,
        jitter: String,
        horizon: std::time::Duration,
    },
    #[error(
        "invalid rate '{0}': expected a number with a unit, bit, kbit, mbit or gbit (bits per second) or bps, kbps, mbps, gbps (bytes per second), between 8kbit and 100gbit, such as 10mbit"
    )]
    InvalidRate(String),
    #[error(
        "invalid loss model '{0}': expected gemodel:P,R[,1-H[,1-K]] with percentages (netem's Gilbert-Elliott parameters), such as gemodel:1,10 or gemodel:5,20,100,0"
    )]
    InvalidLossModel(String),
    #[error(
        "unknown hook '{0}': expected tc, xdp (native where the driver has it, generic otherwise), xdp-native or xdp-generic"
    )]
    UnknownHook(String),
    #[error(
        "--hook xdp takes only `chaos net drop` and `chaos net corrupt`, --direction ingress, on interfaces: {0}; use the default --hook tc"
    )]
    XdpCannot(&'static str),
    #[error("--loss-model is for `chaos net drop`: a {0} picks its packets by --probability")]
    LossModelOnlyForDrop(&'static str),
    #[error(
        "--proto icmp: `chaos net corrupt` flips bits in TCP and UDP payloads: expected --proto tcp or udp, or no --proto (both)"
    )]
    CorruptNeedsTcpOrUdp,
    #[error("unknown DNS response code '{0}': expected SERVFAIL, NXDOMAIN or REFUSED")]
    UnknownRcode(String),
    #[error(
        "invalid DNS name '{0}': expected a domain such as example.com (labels of letters, digits, - and _, 1 to 63 bytes each, 253 characters in all)"
    )]
    InvalidDnsName(String),
    #[error("unknown distribution '{0}': expected uniform, normal, pareto or paretonormal")]
    UnknownDistribution(String),
    #[error("--distribution {0} needs --jitter: the distribution shapes the jitter")]
    DistributionWithoutJitter(String),
    #[error(
        "cannot read the {name} distribution table (iproute2's {name}.dist, searched in {searched}): {reason}; install iproute2 or use --distribution uniform"
    )]
    DistributionTable {
        name: &'static str,
        searched: String,
        reason: String,
    },
    #[error("unknown direction '{0}': expected ingress, egress or both")]
    UnknownDirection(String),
    #[error("unknown protocol '{0}': expected tcp, udp or icmp")]
    UnknownProto(String),
    #[error("--sport and --dport need --proto tcp or udp (or no --proto): ICMP has no ports")]
    PortWithoutPorts,
    #[error("invalid delay '{0}': expected a duration from 1ms to 1h, such as 50ms or 1s")]
    InvalidSyscallDelay(String),
    #[error(
        "--short with --backend tracepoint: short reads cut readv()'s iovecs from an fentry program, which needs trampolines; expected --backend auto or fexit"
    )]
    ShortNeedsTrampolines,
    #[error(
        "invalid clock offset '{0}': expected a duration with an optional sign, from 1ns to 100 years, such as +1h, -90s or 2d"
    )]
    InvalidClockOffset(String),
    #[error("invalid jitter '{0}': expected a duration of at most 1h, such as 10ms")]
    InvalidJitter(String),
    #[error(
        "--jitter {jitter} is larger than --delay {delay}: expected a jitter of at most the delay (each call waits the delay ± the jitter)"
    )]
    JitterOverDelay { jitter: String, delay: String },
    #[error(
        "--detach: a syscall delay needs chaos running, to resume each process it stops; run it without --detach (`chaos run` can schedule it from a file)"
    )]
    DelayNotDetachable,
    #[error("--path {path}: {reason}: expected an existing file or directory")]
    InvalidPath { path: String, reason: String },
}

/// Parses a run duration: positive, humantime syntax (`30s`, `1m30s`, `250ms`).
pub fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    match humantime::parse_duration(s) {
        Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
        _ => Err(ParseError::InvalidDuration(s.to_owned())),
    }
}

/// The longest duration any option takes: longer ones are typos (and would overflow clocks).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a PID: a positive integer.
pub fn parse_pid(s: &str) -> Result<u32, ParseError> {
    match s.parse::<u32>() {
        Ok(pid) if pid > 0 && pid <= i32::MAX as u32 => Ok(pid),
        _ => Err(ParseError::InvalidPid(s.to_owned())),
    }
}

/// Which of the covered calls fail, like strace's `inject=…:when=`: the first `after` pass; of
/// the rest, every `every`-th is a candidate; a candidate fails with `probability`; at most
/// `count` fail.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct When {
    pub after: u64,
    pub every: u64,
    pub count: Option<u64>,
    pub probability: f64,
}

impl Default for When {
    fn default() -> Self {
        When {
            after: 0,
            every: 1,
            count: None,
            probability: 1.0,
        }
    }
}

impl When {
    /// A kernel fault covering `ops` with these rules and nothing else set: no errno, no signal,
    /// no filter (the deadline is set when the run starts).
    pub fn kernel(&self, ops: u64, dry_run: bool) -> CallFault {
        CallFault {
            ops,
            after: self.after,
            every: self.every,
            count: self.count.unwrap_or(0),
            probability: self.probability_threshold(),
            dry_run: u32::from(dry_run),
            ..CallFault::default()
        }
    }

    /// The probability as the kernel compares it: a 32-bit draw below this injects.
    pub fn probability_threshold(&self) -> u64 {
        probability_threshold(self.probability)
    }
}

/// A probability in (0, 1] as the programs compare it: a 32-bit random draw below the result
/// acts; [`PROBABILITY_ONE`] is above every draw.
pub fn probability_threshold(probability: f64) -> u64 {
    ((probability * (1u64 << 32) as f64).round() as u64).clamp(1, PROBABILITY_ONE)
}

/// Parses a probability in (0, 1].
pub fn parse_probability(s: &str) -> Result<f64, ParseError> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(ParseError::InvalidProbability(s.to_owned())),
    }
}

/// Parses a count of at least 1 (for `--count` and `--every`).
pub fn parse_count(s: &str) -> Result<u64, ParseError> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ParseError::InvalidCount(s.to_owned())),
    }
}

/// Parses a port: 1-65535.
pub fn parse_port(s: &str) -> Result<u16, ParseError> {
    match s.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ParseError::InvalidPort(s.to_owned())),
    }
}

/// An IP network from `--addr`: an address with an optional prefix length (`10.0.0.0/8`); a bare
/// address is the host alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The network as the kernel side compares it: IPv6 words, IPv4 as `::ffff:a.b.c.d/96+len`,
    /// in network byte order; the address already masked.
    pub fn kernel_words(&self) -> ([u32; 4], [u32; 4]) {
        let (bytes, prefix) = match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (v6.octets(), u32::from(self.prefix)),
        };
        let mask = u128::MAX
            .checked_shl(128 - prefix)
            .unwrap_or(0)
            .to_be_bytes();
        let words = |bytes: [u8; 16]| {
            std::array::from_fn(|i| {
                u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            })
        };
        let masked = std::array::from_fn(|i| bytes[i] & mask[i]);
        (words(masked), words(mask))
    }
}

impl Cidr {
    /// Whether `addr` is in the network (an IPv4 address in IPv6 form, `::ffff:a.b.c.d`, as
    /// the IPv4 address it is).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses `--addr`: `ADDRESS[/PREFIX]`, IPv4 or IPv6.
pub fn parse_cidr(s: &str) -> Result<Cidr, ParseError> {
    let invalid = || ParseError::InvalidAddr(s.to_owned());
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(invalid)?,
        None => max,
    };
    Ok(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_contains_its_addresses() {
        let net = parse_cidr("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(
            parse_cidr("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            parse_cidr("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn probabilities_and_counts() {
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert_eq!(parse_probability("1"), Ok(1.0));
        for bad in ["0", "-0.1", "1.5", "half", "NaN"] {
            assert_eq!(
                parse_probability(bad),
                Err(ParseError::InvalidProbability(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_count("3"), Ok(3));
        assert_eq!(parse_count("0"), Err(ParseError::InvalidCount("0".into())));
        let half = When {
            probability: 0.5,
            ..When::default()
        };
        assert_eq!(half.probability_threshold(), 1 << 31);
        assert_eq!(When::default().probability_threshold(), PROBABILITY_ONE);
        let tiny = When {
            probability: 1e-12,
            ..When::default()
        };
        assert_eq!(
            tiny.probability_threshold(),
            1,
            "never rounds down to 'never'"
        );
    }

    #[test]
    fn cidrs_become_mapped_ipv6_words() {
        let net = parse_cidr("10.1.2.3/8").unwrap();
        assert_eq!(net.to_string(), "10.1.2.3/8");
        let (addr, mask) = net.kernel_words();
        let bytes =
            |words: [u32; 4]| -> Vec<u8> { words.iter().flat_map(|w| w.to_ne_bytes()).collect() };
        assert_eq!(
            bytes(addr),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 0]
        );
        assert_eq!(
            bytes(mask),
            [255; 13].iter().copied().chain([0; 3]).collect::<Vec<_>>()
        );
        assert_eq!(addr[2], chaos_common::fault::IPV4_MAPPED_WORD);
        let host = parse_cidr("2001:db8::1").unwrap();
        assert_eq!(host.prefix, 128);
        assert_eq!(host.kernel_words().1, [u32::MAX; 4]);
        let any_v6 = parse_cidr("::/0").unwrap();
        assert_eq!(any_v6.kernel_words().1, [0; 4], "::/0 is no filter");
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "example.com",
            "10.0.0/8",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(
                parse_cidr(bad),
                Err(ParseError::InvalidAddr(bad.into())),
                "{bad}"
            );
        }
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
}
