//! The one error type of the cell-side API. Every variant says what was expected and what was
//! found, so a shape or file mistake reads as a sentence rather than a C++ backtrace.

use std::path::PathBuf;

/// Result alias used throughout `torchbook`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A collective between ranks failed: a rank never joined, died, or timed out (c10d's
    /// message kept), or the environment does not describe a process group.
    #[error("distributed: {0}")]
    Distributed(String),
    /// A tensor had the wrong shape for where it was used.
    #[error("{context}: expected shape {expected}, found {found:?}")]
    Shape {
        context: String,
        expected: String,
        found: Vec<i64>,
    },
    /// libtorch refused an operation (its message is kept).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A data file could be read but not understood.
    #[error("{path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A saved checkpoint does not fit the model it is loaded into.
    #[error("checkpoint {path}: tensor {tensor:?}: expected {expected}, found {found}")]
    Checkpoint {
        path: PathBuf,
        tensor: String,
        expected: String,
        found: String,
    },
    /// An encrypted file could not be sealed or opened: wrong key, truncated, tampered, or
    /// encrypted where plain data was expected (and the reverse).
    #[error("{path}: {message}")]
    Crypto { path: PathBuf, message: String },
    /// A model could not be exported faithfully (TorchScript): what was expected of the example
    /// input or of the traced module, and what was found.
    #[error("export to {path}: expected {expected}, found {found}")]
    Export {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The API was used in the wrong order or with impossible settings.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn shape(context: impl Into<String>, expected: impl Into<String>, found: &[i64]) -> Self {
        Error::Shape {
            context: context.into(),
            expected: expected.into(),
            found: found.to_vec(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn crypto(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Crypto {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::Parse {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}
