//! A real process for the tests to fault. Makes one call again and again and prints one line per
//! call: `<CLOCK_MONOTONIC ns> ok` or `<ns> <errno number>`.
//!
//!   victim connect ADDR   connect() to ADDR (then close)
//!   victim open PATH      open() PATH read-only (then close)

use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream},
    thread,
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(call), Some(arg)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: victim connect ADDR | victim open PATH [INTERVAL_MS]");
        std::process::exit(2);
    };
    let interval = Duration::from_millis(args.get(3).and_then(|ms| ms.parse().ok()).unwrap_or(20));
    let attempt: Box<dyn Fn() -> std::io::Result<()>> = match call.as_str() {
        "connect" => {
            let addr: SocketAddr = arg.parse().expect("ADDR must be ip:port");
            Box::new(move || TcpStream::connect(addr).map(drop))
        }
        "open" => {
            let path = arg.clone();
            Box::new(move || std::fs::File::open(&path).map(drop))
        }
        other => panic!("unknown call {other}"),
    };
    let mut stdout = std::io::stdout().lock();
    loop {
        let result = attempt();
        let now = chaos_tests::monotonic_ns();
        let line = match result {
            Ok(()) => format!("{now} ok\n"),
            Err(err) => format!("{now} {}\n", err.raw_os_error().unwrap_or(-1)),
        };
        if stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
        thread::sleep(interval);
    }
}
