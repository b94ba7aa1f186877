//! The exit codes of the `hotrun` binary, one place for all of them (the README lists them).

/// Everything went as asked.
pub const OK: i32 = 0;
/// A runtime failure: an app that could not be started, a failed reload or check, no
/// running hotrun to talk to.
pub const FAILURE: i32 = 1;
/// The command line is wrong (clap's own code for usage errors).
pub const USAGE: i32 = 2;
/// No ecosystem file was found, or it could not be read.
pub const CONFIG_NOT_FOUND: i32 = 3;
/// The ecosystem file was read but is invalid: syntax, types, values, unknown profile,
/// missing script, no apps.
pub const CONFIG_INVALID: i32 = 4;
/// A JavaScript ecosystem file could not be evaluated with node (it threw, never finished,
/// or needs a package that is not installed).
pub const CONFIG_EVAL: i32 = 5;
