//! chaos: kernel-level fault injection for one process, container or network path.
//!
//! One module per concern: [`cli`] parses, [`fault`] is the typed fault model, [`target`] resolves
//! what to break, [`kernel`] probes what the running kernel allows, [`attach`] loads and attaches
//! the eBPF programs, [`run`] holds a run until it ends, [`report`] counts and prints.

pub mod attach;
pub mod btf;
pub mod capabilities;
pub mod cli;
pub mod detached;
pub mod errno_names;
pub mod error;
pub mod experiment;
pub mod fault;
pub mod kernel;
pub mod object;
pub mod report;
pub mod run;
pub mod target;
