use std::process::ExitCode;

use tracing_subscriber::{EnvFilter, fmt};

/// musl's allocator is slow at what a start does most (many small allocations).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `chaos probe --json | head` ends quietly, as Unix tools do, instead of panicking on EPIPE.
    // SAFETY: resetting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = chaos::cli::Cli::from_env();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = tracing_log::LogTracer::init();

    match chaos::cli::execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("chaos: error: {}", chaos::error_line(&err));
            ExitCode::from(err.exit_code())
        }
    }
}
