//! The control socket: a Unix socket per ecosystem file (mode 0600, in the user's runtime
//! folder) that `hotrun reload|restart|stop|status` talk to, one JSON line each way.

pub mod client;
pub mod protocol;
pub mod server;
