//! Processes: how instances are started (own process group, IPC channel, parent-death
//! signal), how every child of hotrun is reaped, how groups are signalled, and the guard
//! process that kills every instance if hotrun itself is killed.

pub mod group;
pub mod guard;
pub mod reaper;
pub mod spawn;
pub mod tree;
