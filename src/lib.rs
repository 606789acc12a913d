//! The `herd` and `herdctl` binaries' shared parts: settings, logging and the
//! wiring of actors into servers. The actors themselves live in the
//! `herd-actors` crate, which reads no files and no command line.

pub mod admin;
pub mod choice;
pub mod cookie;
pub mod ctl;
pub mod journal;
pub mod logging;
pub mod server;
pub mod settings;
pub mod start_error;
