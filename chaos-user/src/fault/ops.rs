//! The operation catalogue (`chaos_common::ops`) as the command line reads it: parsing `--op`
//! and `--backend`, checking filters against what the operations' mechanisms honour, and the
//! texts `--help` and README give.

use std::{fmt::Write as _, str::FromStr};

use chaos_common::{
    hook::Hook,
    ops::{
        self as catalogue, FILTER_ADDR, FILTER_FAMILY, FILTER_PATH, FILTER_PORT, FILTER_UNIX,
        Mechanism, OPS, Rung,
    },
};

use super::ParseError;

/// An operation of the catalogue.
pub type Op = &'static catalogue::Op;

/// Parses `--op`: an operation's name, case-insensitively.
pub fn parse_op(s: &str) -> Result<Op, ParseError> {
    OPS.iter()
        .find(|op| op.name.eq_ignore_ascii_case(s))
        .ok_or_else(|| ParseError::UnknownOp(s.to_owned()))
}

/// Every operation's name, in catalogue order.
pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|op| op.name).collect()
}

/// Every mechanism's name, as `--backend` takes them.
pub fn mechanism_names() -> Vec<&'static str> {
    Mechanism::ALL.iter().map(|m| m.name()).collect()
}

/// The operation that covers `syscall`, for suggesting it when `--syscall` cannot work.
pub fn covering(syscall: &str) -> Option<Op> {
    OPS.iter().find(|op| op.syscalls.contains(&syscall))
}

/// The calls an operation covers, in words: its syscalls and what else.
pub fn calls(op: Op) -> String {
    let mut text: Vec<String> = op.syscalls.iter().map(|s| format!("{s}()")).collect();
    if !op.also.is_empty() {
        text.push(op.also.to_owned());
    }
    text.join(", ")
}

/// What a rung of `op` fails, for the report: its own limit, or every call of the operation. A
/// kprobe per syscall names those `present` says the kernel has (it attaches to no other).
pub fn covers(op: Op, rung: &Rung, present: impl Fn(&str) -> bool) -> String {
    match rung.hooks {
        [Hook::OpOverride { syscalls, .. }] => {
            let calls: Vec<String> = syscalls
                .iter()
                .filter(|syscall| present(syscall))
                .map(|syscall| format!("{syscall}()"))
                .collect();
            format!("{} {}", calls.join(", "), rung.only)
        }
        _ if rung.only.is_empty() => calls(op),
        _ => rung.only.to_owned(),
    }
}

/// Which mechanism `--backend` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The most complete mechanism the running kernel offers.
    #[default]
    Auto,
    Only(Mechanism),
}

impl FromStr for BackendChoice {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(BackendChoice::Auto);
        }
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .map(BackendChoice::Only)
            .ok_or_else(|| ParseError::UnknownBackend(s.to_owned()))
    }
}

/// `--backend` of the faults on one kernel function (`chaos disk error`, `disk cut`): auto,
/// fmod_ret or kprobe-override.
pub fn parse_override_backend(s: &str) -> Result<BackendChoice, ParseError> {
    match s.parse()? {
        BackendChoice::Only(mechanism @ (Mechanism::Lsm | Mechanism::Cgroup)) => {
            Err(ParseError::BackendNotOverriding(mechanism.name()))
        }
        choice => Ok(choice),
    }
}

/// The filters of one fault, as `FILTER_*` bits, with how each is spelled and what it does.
const FILTERS: [(u32, &str, &str); 5] = [
    (FILTER_PATH, "--path", "filters the files calls act on"),
    (
        FILTER_PORT,
        "--port",
        "filters socket addresses, which only some hooks see",
    ),
    (
        FILTER_ADDR,
        "--addr",
        "filters socket addresses, which only some hooks see",
    ),
    (
        FILTER_FAMILY,
        "--family",
        "filters sockets by family, which only some hooks see",
    ),
    (
        FILTER_UNIX,
        "--family unix",
        "needs a hook that runs for UNIX sockets",
    ),
];

/// Checks that each of `ops` has a mechanism that honours every filter in `filters` (bits).
pub fn check_filters(ops: &[Op], filters: u32) -> Result<(), ParseError> {
    for op in ops {
        let missing = filters & !op.filters();
        if let Some(&(bit, filter, what)) = FILTERS.iter().find(|(bit, ..)| missing & bit != 0) {
            let accepted: Vec<&str> = OPS
                .iter()
                .filter(|op| op.filters() & bit != 0)
                .map(|op| op.name)
                .collect();
            return Err(ParseError::FilterNotApplicable {
                filter,
                what,
                op: op.name,
                accepted: accepted.join(", "),
            });
        }
    }
    Ok(())
}

/// Checks that `--backend` leaves each of `ops` a mechanism that honours every filter given.
pub fn check_backend(ops: &[Op], filters: u32, choice: BackendChoice) -> Result<(), ParseError> {
    let BackendChoice::Only(mechanism) = choice else {
        return Ok(());
    };
    for op in ops {
        let mut offered = op.rungs.iter().filter(|rung| rung.mechanism == mechanism);
        let Some(first) = offered.next() else {
            let has: Vec<&str> = op.rungs.iter().map(|r| r.mechanism.name()).collect();
            return Err(ParseError::BackendNotOffered {
                backend: mechanism.name(),
                op: op.name,
                has: has.join(", "),
            });
        };
        let honoured = std::iter::once(first)
            .chain(offered)
            .any(|rung| filters & !rung.filters == 0);
        if !honoured {
            let missing = filters & !first.filters;
            let filter = FILTERS
                .iter()
                .find(|(bit, ..)| missing & bit != 0)
                .map_or("a filter", |&(_, filter, _)| filter);
            let can: Vec<&str> = op
                .rungs
                .iter()
                .filter(|rung| filters & !rung.filters == 0)
                .map(|rung| rung.mechanism.name())
                .collect();
            return Err(ParseError::BackendFilter {
                backend: mechanism.name(),
                op: op.name,
                filter,
                can: if can.is_empty() {
                    "no mechanism".to_owned()
                } else {
                    can.join(", ")
                },
            });
        }
    }
    Ok(())
}

/// The operations for `chaos fail --help`: each with its mechanisms in order of preference.
pub fn help() -> String {
    let mut text = String::from(
        "Operations (the mechanisms that can fail each, the preferred first; README.md lists \
         the calls and hooks):\n",
    );
    for op in OPS {
        let mechanisms: Vec<&str> = op.rungs.iter().map(|r| r.mechanism.name()).collect();
        let _ = writeln!(text, "  {:<9} {}", op.name, mechanisms.join(", then "));
    }
    text
}

/// README's table of operations, as the catalogue makes it: the calls, then each mechanism with
/// its hooks, what it limits itself to and what it needs.
pub fn readme_table() -> String {
    let mut table = String::from(
        "| op | calls | mechanisms, the preferred first |\n|----|-------|------------------|\n",
    );
    for op in OPS {
        let rungs: Vec<String> = op
            .rungs
            .iter()
            .map(|rung| {
                let hooks: Vec<&str> = rung
                    .hooks
                    .iter()
                    .map(|hook| match (hook, hook.section()) {
                        (Hook::FmodRet { function, .. }, _) => function,
                        (Hook::OpOverride { .. }, _) => "a kprobe per syscall",
                        (_, (kind, "")) => kind,
                        (_, (_, name)) => name,
                    })
                    .collect();
                let mut text = format!("{} ({})", rung.mechanism.name(), hooks.join(", "));
                if !rung.only.is_empty() {
                    let _ = write!(text, ": {}", covers(op, rung, |_| true));
                }
                if !rung.needs.is_empty() {
                    let _ = write!(text, "; needs {}", rung.needs);
                }
                text
            })
            .collect();
        let _ = writeln!(
            table,
            "| `{}` | {} | {} |",
            op.name,
            calls(op),
            rungs.join("; else ")
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use chaos_common::ops::OP_COUNT;

    use crate::fault::disk::DiskOp;

    use super::*;

    #[test]
    fn ops_parse_and_reject_unknown() {
        assert_eq!(parse_op("open").map(|op| op.name), Ok("open"));
        assert_eq!(parse_op("CONNECT").map(|op| op.name), Ok("connect"));
        let err = parse_op("frobnicate").unwrap_err().to_string();
        assert!(
            err.contains("frobnicate") && err.contains("open, read, write"),
            "{err}"
        );
    }

    #[test]
    fn every_op_has_a_distinct_code_a_name_and_a_rung() {
        let mut codes: Vec<u32> = OPS.iter().map(|op| op.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), OPS.len());
        assert_eq!(
            OPS.len() as u32 + 8 + DiskOp::ALL.len() as u32,
            OP_COUNT,
            "every op, OP_SIGNAL, OP_SYSCALL, OP_STATFS, OP_CORRUPT_*, OP_DELAY, OP_CLOCK* and the disk ops"
        );
        for op in OPS {
            assert!(
                !op.rungs.is_empty() && !op.syscalls.is_empty(),
                "{}",
                op.name
            );
            assert_eq!(parse_op(op.name), Ok(op));
            for syscall in op.syscalls {
                assert_eq!(covering(syscall), Some(op), "{syscall}");
            }
        }
    }

    #[test]
    fn a_kprobe_rung_covers_the_syscalls_the_kernel_has() {
        let open = parse_op("open").unwrap();
        let rung = open
            .rungs
            .iter()
            .find(|rung| rung.mechanism == Mechanism::KprobeOverride)
            .unwrap();
        // arm64 has no open() nor creat(): only openat() and openat2() are hooked there.
        let here = covers(open, rung, |syscall| syscall.starts_with("openat"));
        let calls: Vec<&str> = here
            .split(" at their entry")
            .next()
            .unwrap()
            .split(", ")
            .collect();
        assert_eq!(calls, ["openat()", "openat2()"], "{here}");
        assert!(covers(open, rung, |_| true).starts_with("open(), openat()"));
    }

    #[test]
    fn readme_has_the_catalogues_table() {
        let readme = include_str!("../../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README's operations table differs from the catalogue's; it should read:\n{table}"
        );
    }

    #[test]
    fn filters_are_checked_against_the_mechanisms() {
        let op = |name| parse_op(name).unwrap();
        assert!(check_filters(&[op("connect"), op("bind"), op("send")], FILTER_PORT).is_ok());
        let err = check_filters(&[op("connect"), op("open")], FILTER_PORT)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--port")
                && err.contains("--op open")
                && err.contains("connect, bind, send"),
            "{err}"
        );
        assert!(check_filters(&[op("socket")], FILTER_FAMILY | FILTER_UNIX).is_ok());
        assert!(check_filters(&[op("socket")], FILTER_PORT).is_err());
        let err = check_filters(&[op("open"), op("fork")], FILTER_PATH)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--path") && err.contains("--op fork"), "{err}");
        assert!(err.contains("open, read, write"), "{err}");
    }

    #[test]
    fn a_backend_must_offer_the_op_and_honour_its_filters() {
        let op = |name| parse_op(name).unwrap();
        let cgroup = BackendChoice::Only(Mechanism::Cgroup);
        assert!(check_backend(&[op("connect")], FILTER_PORT, cgroup).is_ok());
        let err = check_backend(&[op("open")], 0, cgroup)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--op open") && err.contains("it has lsm"),
            "{err}"
        );
        let unix = FILTER_FAMILY | FILTER_UNIX;
        let err = check_backend(&[op("connect")], unix, cgroup)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--family unix") && err.contains("--backend cgroup"),
            "{err}"
        );
        assert!(check_backend(&[op("connect")], unix, BackendChoice::Auto).is_ok());
    }

    #[test]
    fn backends_by_mechanism_name() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("lsm".parse(), Ok(BackendChoice::Only(Mechanism::Lsm)));
        let err = "ebpf".parse::<BackendChoice>().unwrap_err().to_string();
        assert!(
            err.contains("ebpf") && err.contains("auto, lsm, fmod_ret, cgroup"),
            "{err}"
        );
    }
}
