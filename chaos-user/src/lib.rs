//! chaos: kernel-level fault injection for one process, container or network path.
//!
//! One module per concern, each importing only from the layers below it:
//! - [`cli`]: the command line, each command's flow and its error; experiments (`chaos run`).
//! - [`run`]: a fault live in the kernel until its run ends, and its report; [`detached`] runs.
//! - [`plan`]: which mechanism fails each operation on this kernel.
//! - [`fault`] (the typed fault model), [`target`] (what to break), [`kernel`] (what the running
//!   kernel allows, found by trying), [`report`] (counters, status line, JSON).
//! - [`attach`]: the one path from a hook to a program live in the kernel and back.
//! - [`sys`], [`state`], [`clock`], [`object`], [`btf`], [`capabilities`], [`errno_names`],
//!   [`rng`]: the machine, where runs keep their state, the kernel's clock, the embedded objects,
//!   random numbers.

pub mod attach;
pub mod btf;
pub mod capabilities;
pub mod cli;
pub mod clock;
pub mod detached;
pub mod errno_names;
pub mod fault;
pub mod k8s;
pub mod kernel;
pub mod netlink;
pub mod object;
pub mod pause;
pub mod plan;
pub mod report;
pub mod rng;
pub mod run;
pub mod sockdiag;
pub mod state;
pub mod sys;
pub mod target;

/// An error with its causes, as one line of text (a verifier's log is in the last).
pub fn error_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // aya and kube repeat a cause in their own message.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}
