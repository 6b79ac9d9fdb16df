//! The error of a whole command, and the exit code it maps to.

use thiserror::Error;

use crate::{attach::AttachError, fault::ParseError, target::TargetError};

/// Exit codes, as `chaos --help` documents them.
pub mod exit {
    /// The run went as asked (also after Ctrl-C, SIGTERM or SIGHUP ended it early).
    pub const OK: u8 = 0;
    /// Something failed while running, or the demo did not see what it expected.
    pub const FAILURE: u8 = 1;
    /// Bad input, a target that does not exist, missing privileges, or a fault this kernel
    /// cannot inject: nothing was attached.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("missing capabilities {}: run as root or grant them", .0.join(", "))]
    Privileges(Vec<&'static str>),
    #[error("no detached run '{id}': expected one of the IDs `chaos list` shows ({known})")]
    NoSuchRun { id: String, known: String },
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
    #[error("cannot read the experiment file {}", path.display())]
    ExperimentFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Parse(_)
            | Error::Privileges(_)
            | Error::NoSuchRun { .. }
            | Error::Experiment(_)
            | Error::ExperimentFile { .. } => exit::USAGE,
            Error::Target(TargetError::Proc { .. } | TargetError::CgroupNotVisible { .. }) => {
                exit::FAILURE
            }
            Error::Target(_) => exit::USAGE,
            Error::Attach(
                AttachError::Unsupported { .. }
                | AttachError::SyscallTracepoint { .. }
                | AttachError::SyscallOverride { .. }
                | AttachError::PathOffsets(_)
                | AttachError::NetUnsupported(_),
            ) => exit::USAGE,
            Error::Attach(_) | Error::Io(_) => exit::FAILURE,
        }
    }
}
