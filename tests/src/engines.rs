//! What the tests of the engines' front ends (the Chaos Toolkit extension, the Ansible role)
//! share: a real HTTP service to keep answering, chaos's detached runs, a victim refused during
//! the run and whole after it.

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Victim, chaos};

const ECONNREFUSED: i32 = 111;

/// A real HTTP service on loopback: Python's http.server on a free port, serving `dir`;
/// stopped on drop.
pub struct HttpService {
    child: Child,
    pub url: String,
}

impl HttpService {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server never listened");
            thread::sleep(Duration::from_millis(50));
        }
        HttpService {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for HttpService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (just now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory of this test process under the temporary directory: `chaos-TAG-NAME-PID`.
pub fn scratch_dir(tag: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-{tag}-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The detached runs `chaos list --json` shows.
pub fn detached_runs() -> Vec<Value> {
    let output = chaos(&["list", "--json"]);
    assert!(output.status.success());
    serde_json::from_slice::<Value>(&output.stdout)
        .expect("chaos list --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Asserts the victim's connects were refused during the run, and succeed again after `ended`
/// (CLOCK_MONOTONIC ns).
pub fn assert_refused_then_recovered(victim: &Victim, ended: u64) {
    assert!(
        victim
            .calls()
            .iter()
            .any(|call| call.errno == Some(ECONNREFUSED)),
        "the victim's connects never failed"
    );
    victim.wait_for_call_after(ended);
    let after = victim.calls_begun_after(ended);
    assert!(
        after.iter().all(|call| call.errno.is_none()),
        "connects still failed after the run: {after:?}"
    );
}
