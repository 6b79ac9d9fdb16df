//! Hanging a target: the cgroup v2 freezer for a cgroup (a container, a pod), SIGSTOP and
//! SIGCONT for processes. A guard process in a session of its own thaws whatever chaos froze
//! when chaos ends, even by SIGKILL: it waits for its stdin, which only chaos holds, to close.
//! `chaos delay` has a guard too, for the processes its programs stopped.

use std::{
    fs, io,
    os::{
        fd::{AsRawFd as _, BorrowedFd, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use crate::target::{self, Targets};

/// How long a freeze may take to complete (a task in an uninterruptible sleep holds it up).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

/// What is frozen, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pausable {
    /// Every process of a cgroup v2 directory, by its freezer (`cgroup.freeze`).
    Cgroup(PathBuf),
    /// Processes, by SIGSTOP; with `tree`, every descendant too.
    Processes(Vec<(u32, bool)>),
}

impl Pausable {
    pub fn of(targets: &Targets) -> Self {
        match &targets.cgroup {
            Some(cgroup) => Pausable::Cgroup(cgroup.path.clone()),
            None => {
                Pausable::Processes(targets.processes.iter().map(|p| (p.pid, p.tree)).collect())
            }
        }
    }

    pub fn mechanism(&self) -> &'static str {
        match self {
            Pausable::Cgroup(_) => "cgroup-freezer",
            Pausable::Processes(_) => "sigstop",
        }
    }

    /// Freezes every process; an error when the target is gone (its cgroup removed, its
    /// processes exited).
    pub fn freeze(&self) -> io::Result<()> {
        match self {
            Pausable::Cgroup(path) => {
                fs::write(path.join("cgroup.freeze"), "1")?;
                let deadline = Instant::now() + FREEZE_TIMEOUT;
                while !frozen(path)? && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            }
            Pausable::Processes(roots) => signal_all(roots, libc::SIGSTOP),
        }
    }

    /// Lets every process run again.
    pub fn thaw(&self) -> io::Result<()> {
        match self {
            Pausable::Cgroup(path) => fs::write(path.join("cgroup.freeze"), "0"),
            Pausable::Processes(roots) => signal_all(roots, libc::SIGCONT),
        }
    }

    /// Kills every process with SIGKILL (a frozen or stopped process dies too): `cgroup.kill`
    /// (5.14), else each process the cgroup holds.
    pub fn kill(&self) -> io::Result<()> {
        match self {
            Pausable::Cgroup(path) => {
                let kill = path.join("cgroup.kill");
                if kill.exists() {
                    return fs::write(kill, "1");
                }
                let roots: Vec<(u32, bool)> = target::processes_under(path)
                    .into_iter()
                    .map(|pid| (pid, false))
                    .collect();
                signal_all(&roots, libc::SIGKILL)
            }
            Pausable::Processes(roots) => signal_all(roots, libc::SIGKILL),
        }
    }

    /// The guard's command-line arguments after `chaos pause-guard`.
    fn guard_args(&self) -> Vec<String> {
        match self {
            Pausable::Cgroup(path) => vec!["--cgroup".into(), path.display().to_string()],
            Pausable::Processes(roots) => roots
                .iter()
                .flat_map(|&(pid, tree)| {
                    let flag = if tree { "--pid-tree" } else { "--pid" };
                    [flag.to_owned(), pid.to_string()]
                })
                .collect(),
        }
    }

    /// Starts the guard: a `chaos pause-guard` in a session of its own that thaws this target
    /// once its stdin closes, which happens when this process ends, however it ends.
    pub fn spawn_guard(&self) -> io::Result<Guard> {
        spawn_guard(self.guard_args(), None)
    }
}

/// The guard's descriptor for a map it is handed (`--delayed-fd`).
pub const GUARD_MAP_FD: RawFd = 3;

/// Starts `chaos pause-guard ARGS` in a session of its own, with `map` as its descriptor
/// [`GUARD_MAP_FD`] if given; it acts once its stdin, which only this process holds, closes.
pub fn spawn_guard(args: Vec<String>, map: Option<BorrowedFd<'_>>) -> io::Result<Guard> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("pause-guard")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let map = map.map(|fd| fd.as_raw_fd());
    // SAFETY: setsid, dup2 and fcntl are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // The copy must survive exec: dup2 clears close-on-exec, except onto itself.
            let inherited = match map {
                Some(GUARD_MAP_FD) => libc::fcntl(GUARD_MAP_FD, libc::F_SETFD, 0),
                Some(fd) => libc::dup2(fd, GUARD_MAP_FD),
                None => 0,
            };
            if inherited == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdin = child.stdin.take();
    Ok(Guard { child, stdin })
}

/// The guard of a pause: dropping it closes its stdin, and it thaws the target and exits.
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Whether the cgroup's freeze has completed (`frozen 1` in cgroup.events).
fn frozen(path: &Path) -> io::Result<bool> {
    Ok(fs::read_to_string(path.join("cgroup.events"))?
        .lines()
        .any(|line| line == "frozen 1"))
}

/// Sends `signal` to each root and, for a tree, each of its descendants now; an error when none
/// of them exists any more.
fn signal_all(roots: &[(u32, bool)], signal: libc::c_int) -> io::Result<()> {
    let mut reached = 0;
    for &(root, tree) in roots {
        let descendants = if tree {
            target::descendants(root)
        } else {
            Vec::new()
        };
        for pid in std::iter::once(root).chain(descendants) {
            // SAFETY: kill(2) has no memory effects.
            if unsafe { libc::kill(pid as i32, signal) } == 0 {
                reached += 1;
            }
        }
    }
    if reached == 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// `chaos pause-guard`: waits until its stdin closes (the pause ended, or chaos died) or a
/// signal ends it, then runs `thaw`.
pub fn guard(thaw: impl FnOnce()) {
    // SAFETY: a signal set built here, blocked on this thread before any other exists, so that
    // the reader thread below never takes these signals and sigwait does.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        // SAFETY: kill(2) to this process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGUSR1);
        }
    });
    let mut signal = 0;
    // SAFETY: the set was initialised above.
    unsafe {
        libc::sigwait(&set, &mut signal);
    }
    thaw();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_is_told_what_to_thaw() {
        let cgroup = Pausable::Cgroup("/sys/fs/cgroup/app".into());
        assert_eq!(cgroup.guard_args(), ["--cgroup", "/sys/fs/cgroup/app"]);
        let processes = Pausable::Processes(vec![(7, false), (9, true)]);
        assert_eq!(processes.guard_args(), ["--pid", "7", "--pid-tree", "9"]);
        assert_eq!(processes.mechanism(), "sigstop");
    }
}
