//! hotrun: a foreground process runner for web apps that reads PM2 ecosystem files.
//!
//! `main.rs` parses the command line and calls into the modules here:
//! `config` turns an ecosystem file into a [`plan::Plan`], `supervisor` runs it.

pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod exit;
pub mod http;
pub mod init;
pub mod logs;
pub mod memory;
pub mod plan;
pub mod probe;
pub mod process;
pub mod runtime_dir;
pub mod schedule;
pub mod sockets;
pub mod startup;
pub mod supervisor;
pub mod upgrade;
pub mod watch;
