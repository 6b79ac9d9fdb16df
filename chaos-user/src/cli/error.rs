//! The error of a whole command, and the exit code it maps to.

use std::{io, path::PathBuf};

use thiserror::Error;

use super::experiment::ExperimentError;
use crate::{
    detached::DetachedError, fault::ParseError, plan::PlanError, run::RunError, target::TargetError,
};

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
    Plan(#[from] PlanError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Detached(#[from] DetachedError),
    #[error("missing capabilities {}: run as root or grant them", .0.join(", "))]
    Privileges(Vec<&'static str>),
    #[error("no detached run '{id}': expected one of the IDs `chaos list` shows ({known})")]
    NoSuchRun { id: String, known: String },
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    #[error("cannot read the experiment file {}", path.display())]
    ExperimentFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[cfg(feature = "k8s")]
    #[error(transparent)]
    K8s(Box<crate::k8s::K8sError>),
    /// A command this build of chaos leaves out (the node image's binary).
    #[error(
        "{what} is not in this build of chaos (built without the `{feature}` feature, as the node image's binary is): use the Debian package's or a `cargo build` of chaos"
    )]
    NotBuilt {
        what: &'static str,
        feature: &'static str,
    },
    /// A `chaos k8s run` refused before anything was created: its fault, selector or targets.
    #[error("{0}")]
    K8sFault(String),
    /// The running kernel cannot do what the command asks: `detail` names the kernel option.
    #[error("{what} cannot run on this kernel: {detail}")]
    Unsupported { what: String, detail: String },
    /// Anything else the command does with the system: `action` says what, with its object.
    #[error("cannot {action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

#[cfg(feature = "k8s")]
impl From<crate::k8s::K8sError> for Error {
    fn from(err: crate::k8s::K8sError) -> Self {
        // Boxed: a kube error is large, and every command returns this type.
        Error::K8s(Box::new(err))
    }
}

impl Error {
    /// An I/O error of `action` (`bind the demo's server to 127.0.0.1:0`).
    pub fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let action = action.into();
        move |source| Error::Io { action, source }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Parse(_)
            | Error::Plan(_)
            | Error::Privileges(_)
            | Error::NoSuchRun { .. }
            | Error::Unsupported { .. }
            | Error::Experiment(_)
            | Error::ExperimentFile { .. }
            | Error::K8sFault(_)
            | Error::NotBuilt { .. } => exit::USAGE,
            #[cfg(feature = "k8s")]
            Error::K8s(err) if err.is_refusal() => exit::USAGE,
            #[cfg(feature = "k8s")]
            Error::K8s(_) => exit::FAILURE,
            Error::Target(TargetError::Proc { .. } | TargetError::CgroupNotVisible { .. }) => {
                exit::FAILURE
            }
            Error::Target(_) => exit::USAGE,
            Error::Run(err) if err.is_unsupported() => exit::USAGE,
            Error::Run(_) | Error::Detached(_) | Error::Io { .. } => exit::FAILURE,
        }
    }
}
