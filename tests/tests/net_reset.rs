//! `chaos net reset`: a target's live TCP connection is aborted (its next call fails with
//! ECONNABORTED), the ones it makes during the run are reset too, and it connects again after
//! the run; a connection of another port (--port) and a bystander process keep theirs.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::Command,
    thread,
};

use chaos_tests::*;

const VICTIM: &str = env!("CARGO_BIN_EXE_victim");

/// An echo server on loopback, one thread per connection, for the test's life: its address.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for connection in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut connection = connection;
                let mut byte = [0u8; 1];
                while connection.read_exact(&mut byte).is_ok() {
                    if connection.write_all(&byte).is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// A victim holding one connection to `address`, a byte through it every call.
fn streaming(address: &str) -> Victim {
    let mut command = Command::new(VICTIM);
    command.args(["stream", address]);
    let victim = Victim::spawn(command, false, None);
    victim.wait_for_calls(3);
    victim
}

/// Whether this kernel can destroy sockets; where it cannot, chaos's refusal names the option.
/// The probe run matches nothing (a documentation network no connection goes to).
fn supported(pid: u32) -> bool {
    let pid = pid.to_string();
    let output = chaos(&[
        "net",
        "reset",
        "--pid",
        &pid,
        "--dst",
        "192.0.2.0/24",
        "--for",
        "1ms",
    ]);
    if output.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONFIG_INET_DIAG"), "{stderr}");
    eprintln!(
        "NOT INJECTED on this kernel, which cannot destroy sockets (refusal asserted): {stderr}"
    );
    false
}

#[test]
fn live_and_new_connections_are_reset_for_the_run_only() {
    let server = echo_server();
    let other_server = echo_server();
    let port = server.rsplit(':').next().unwrap().to_owned();
    let target = streaming(&server);
    let other_port = streaming(&other_server);
    let bystander = streaming(&server);
    if !supported(target.pid()) {
        return;
    }
    let pids = format!("{},{}", target.pid(), other_port.pid());
    let ran = run_chaos(&[
        "net", "reset", "--pid", &pids, "--port", &port, "--for", "1500ms", "--json",
    ]);
    let (start, end) = ran.window;
    target.wait_for_call_after(end);
    let row = &ran.report["faults"][0];
    assert_eq!(row["kind"], "net");
    assert_eq!(row["op"], "reset");
    assert_eq!(row["mechanism"], "sock-destroy");

    let calls = target.calls();
    let failures: Vec<_> = calls.iter().filter(|c| c.errno.is_some()).collect();
    let first = failures
        .first()
        .expect("the target's connection was never reset");
    assert_eq!(
        first.errno,
        Some(libc::ECONNABORTED),
        "the live connection's first failure"
    );
    // A connection destroyed by the run's last sweep fails at the victim's next call, which
    // may come just after chaos has exited: a second of slack after the run.
    for failure in &failures {
        assert!(
            (start..=end + 1_000_000_000).contains(&failure.at_ns),
            "a failure {} ms after the run's start, which lasted {} ms",
            failure.at_ns.saturating_sub(start) / 1_000_000,
            (end - start) / 1_000_000
        );
        assert!(
            [libc::ECONNABORTED, libc::ECONNRESET, libc::EPIPE].contains(&failure.errno.unwrap()),
            "unexpected errno {:?}",
            failure.errno
        );
    }
    // Connections made during the run were reset as well: more than the one live at the start.
    let destroyed = row["injected"].as_u64().unwrap();
    assert!(
        destroyed >= 2,
        "only {destroyed} connection(s) destroyed: {}",
        ran.report
    );
    let last_failure = failures.last().map_or(0, |c| c.at_ns).max(end);
    target.wait_for_call_after(last_failure + 100_000_000);
    assert!(
        target
            .calls()
            .iter()
            .any(|c| c.at_ns > last_failure && c.errno.is_none()),
        "the target did not connect again after the run"
    );
    for (what, victim) in [("another port", &other_port), ("a bystander", &bystander)] {
        let hit: Vec<_> = victim.calls().iter().filter_map(|c| c.errno).collect();
        assert!(hit.is_empty(), "{what} was hit: {hit:?}");
        assert!(
            victim
                .calls()
                .iter()
                .any(|c| (start..end).contains(&c.at_ns))
        );
    }
    assert_no_chaos_programs();
}

/// Bad input: exit 2, naming the value; nothing is reset.
#[test]
fn bad_input_is_refused() {
    let server = echo_server();
    let target = streaming(&server);
    let pid = target.pid().to_string();
    for (args, named) in [
        (vec!["--port", "0"], "0"),
        (vec!["--dst", "10.0.0.300"], "10.0.0.300"),
        (vec!["--for", "a while"], "a while"),
    ] {
        let mut all = vec!["net", "reset", "--pid", &pid];
        all.extend_from_slice(&args);
        let output = chaos(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    assert!(target.calls().iter().all(|c| c.errno.is_none()));
}
