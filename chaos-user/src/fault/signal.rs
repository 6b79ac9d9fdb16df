//! Signal faults (`chaos signal`): a target gets a signal when it enters a syscall.

use std::{fmt, str::FromStr};

use chaos_common::{fault::CallFault, ops::OP_SIGNAL};

use super::{ParseError, When};

/// A signal, by name (`KILL`, `SIGKILL`, case-insensitive) or number (1-31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("SYS", libc::SIGSYS),
    ];

    pub const fn get(self) -> i32 {
        self.0
    }
}

impl FromStr for Signal {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(number) = s.parse::<i32>() {
            return if (1..=31).contains(&number) {
                Ok(Signal(number))
            } else {
                Err(ParseError::UnknownSignal(s.to_owned()))
            };
        }
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|&(_, number)| Signal(number))
            .ok_or_else(|| ParseError::UnknownSignal(s.to_owned()))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Signal::NAMES.iter().find(|&&(_, number)| number == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// The syscalls a 64-bit caller makes under a name the kernel gives its newer form: stat(2)
/// enters `sys_newstat`. `__x64_sys_stat` and `sys_enter_stat`, where a kernel has them, serve an
/// older ABI that no 64-bit program reaches, so a fault there would never fire.
const NEWER_FORMS: [&str; 5] = ["stat", "lstat", "fstat", "fstatat", "uname"];

/// Parses a syscall name: what follows `sys_enter_` in the tracepoint's name, a syscall with a
/// newer form named by the call (`stat` is `newstat`).
pub fn parse_syscall(s: &str) -> Result<String, ParseError> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid && NEWER_FORMS.contains(&s) {
        Ok(format!("new{s}"))
    } else if valid {
        Ok(s.to_owned())
    } else {
        Err(ParseError::InvalidSyscall(s.to_owned()))
    }
}

/// A signal fault: the target gets `signal` when it enters `syscall`.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalFault {
    pub syscall: String,
    pub signal: Signal,
    pub dry_run: bool,
    pub when: When,
}

impl SignalFault {
    /// The fault as the kernel side reads it (the deadline is set when the run starts).
    pub fn kernel(&self) -> CallFault {
        CallFault {
            signal: self.signal.get() as u32,
            ..self.when.kernel(1 << OP_SIGNAL, self.dry_run)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!("KILL".parse(), Ok(Signal(libc::SIGKILL)));
        assert_eq!("sigstop".parse(), Ok(Signal(libc::SIGSTOP)));
        assert_eq!("11".parse(), Ok(Signal(libc::SIGSEGV)));
        assert_eq!(Signal(libc::SIGABRT).to_string(), "SIGABRT");
        for bad in ["FOO", "0", "32", "SIG"] {
            assert_eq!(
                bad.parse::<Signal>(),
                Err(ParseError::UnknownSignal(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_syscall("fsync"), Ok("fsync".into()));
        assert!(parse_syscall("../x").is_err() && parse_syscall("").is_err());
        // The forms 64-bit callers enter.
        assert_eq!(parse_syscall("stat"), Ok("newstat".into()));
        assert_eq!(parse_syscall("newstat"), Ok("newstat".into()));
        assert_eq!(parse_syscall("fstatat"), Ok("newfstatat".into()));
    }
}
