//! What two of torchbook's processes share, and nothing else: the kernel and its engine talk
//! over [`engine`] (and take over spares with [`spare`] and [`fd_passing`]); the cell worker
//! reports to both through [`side_channel`] records and [`question_mark`] lines; errors for the
//! user travel as [`cell_error::CellError`]; the engine gives every worker [`worker`]'s setup.
//!
//! Without the `engine` feature, [`spare`] and [`fd_passing`] (processes, sockets) are left out.

pub mod cell_error;
pub mod engine;
#[cfg(feature = "engine")]
pub mod fd_passing;
pub mod question_mark;
pub mod side_channel;
#[cfg(feature = "engine")]
pub mod spare;
pub mod worker;
