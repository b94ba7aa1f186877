//! hotrun's own stdout and stderr while it runs apps. A console that is not read (`hotrun |
//! less`, a stalled `tee` or log shipper, a container runtime's blocking log driver) must
//! never stall the runner: lines go into a bounded queue that a thread of its own writes
//! out. When the queue is full, lines are dropped and counted (the apps' log files still
//! get every line), and once the reader catches up hotrun says how many it dropped. A
//! console that is gone (EPIPE) is given up on. Each line is written whole, and stdout and
//! stderr that are the same file (`2>&1`) share one queue, so their order is kept.
//!
//! Before `Console::start` (client commands, errors before the runner starts) lines are
//! written directly, as any command-line tool does.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One of hotrun's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fd {
    Out,
    Err,
}

/// What a console queue holds at most before it drops lines.
pub const QUEUE_BYTES: usize = 4 << 20;

/// Writes one whole line (with its newline) to hotrun's stdout or stderr.
pub fn write(fd: Fd, line: &[u8]) {
    match QUEUES.get() {
        Some(queues) => queues.of(fd).push(line),
        None => write_direct(fd, line),
    }
}

fn write_direct(fd: Fd, line: &[u8]) {
    // A closed console is no reason to stop.
    let _ = match fd {
        Fd::Out => std::io::stdout().lock().write_all(line),
        Fd::Err => std::io::stderr().lock().write_all(line),
    };
}

static QUEUES: OnceLock<Queues> = OnceLock::new();

struct Queues {
    out: Arc<Queue>,
    /// The same queue as `out` when stdout and stderr are one file.
    err: Arc<Queue>,
}

impl Queues {
    fn of(&self, fd: Fd) -> &Queue {
        match fd {
            Fd::Out => &self.out,
            Fd::Err => &self.err,
        }
    }

    fn all(&self) -> Vec<&Arc<Queue>> {
        if Arc::ptr_eq(&self.out, &self.err) {
            vec![&self.out]
        } else {
            vec![&self.out, &self.err]
        }
    }
}

/// The writer side of hotrun's console while the runner runs; dropping it flushes what is
/// queued, waiting at most a moment for a reader that is stalled.
pub struct Console(());

impl Console {
    /// From now on, console lines are queued and written by threads of their own.
    pub fn start() -> Console {
        QUEUES.get_or_init(|| {
            let out = Queue::spawn(Fd::Out, QUEUE_BYTES);
            let err = if same_file(std::io::stdout().as_raw_fd(), std::io::stderr().as_raw_fd()) {
                out.clone()
            } else {
                Queue::spawn(Fd::Err, QUEUE_BYTES)
            };
            Queues { out, err }
        });
        Console(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        flush_for(Duration::from_secs(2));
    }
}

/// Waits (at most `wait`, for a reader that is stalled) until what is queued for the
/// console is written: at exit, and before an upgrade's exec.
pub fn flush_for(wait: Duration) {
    if let Some(queues) = QUEUES.get() {
        let deadline = Instant::now() + wait;
        for q in queues.all() {
            q.flush_until(deadline);
        }
    }
}

fn same_file(a: i32, b: i32) -> bool {
    // SAFETY: fds 1 and 2 are open for the life of the process (or fstat fails).
    let (a, b) = unsafe { (BorrowedFd::borrow_raw(a), BorrowedFd::borrow_raw(b)) };
    match (nix::sys::stat::fstat(a), nix::sys::stat::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// A bounded queue of whole lines and the state of its writer.
struct Queue {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    filled: Condvar,
    /// Signalled when the writer has written everything queued.
    emptied: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines dropped since the last notice.
    dropped: u64,
    /// The writer holds lines it took from the queue.
    writing: bool,
    /// The console is gone: lines are discarded.
    closed: bool,
}

impl Queue {
    fn spawn(fd: Fd, capacity: usize) -> Arc<Queue> {
        let queue = Arc::new(Queue::new(capacity));
        let q = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("hotrun-console".into())
            .spawn(move || q.drain_into(&mut Sink(fd)));
        if spawned.is_err() {
            // No thread: the lines are written directly, as before the runner started.
            queue.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        }
        queue
    }

    fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            filled: Condvar::new(),
            emptied: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `line`, or drops and counts it when the queue is full.
    fn push(&self, line: &[u8]) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        if s.bytes + line.len() > self.capacity {
            s.dropped += 1;
            return;
        }
        s.bytes += line.len();
        s.lines.push_back(line.to_vec());
        drop(s);
        self.filled.notify_one();
    }

    /// The writer: takes every queued line, writes them in one go, and says what was
    /// dropped once there is room again. Ends when the console is gone.
    fn drain_into(&self, sink: &mut impl Write) {
        loop {
            let (batch, dropped) = {
                let mut s = self.lock();
                while s.lines.is_empty() {
                    s.writing = false;
                    self.emptied.notify_all();
                    s = self.filled.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                s.writing = true;
                let mut batch = Vec::with_capacity(s.bytes.min(1 << 20));
                while let Some(line) = s.lines.pop_front() {
                    s.bytes -= line.len();
                    batch.extend_from_slice(&line);
                    if batch.len() >= 1 << 20 {
                        break;
                    }
                }
                (batch, std::mem::take(&mut s.dropped))
            };
            let mut out = batch;
            if dropped > 0 {
                out.extend_from_slice(dropped_notice(dropped).as_bytes());
            }
            if sink.write_all(&out).is_err() {
                let mut s = self.lock();
                s.closed = true;
                s.lines.clear();
                s.bytes = 0;
                s.writing = false;
                self.emptied.notify_all();
                return;
            }
        }
    }

    /// Waits until everything queued is written, or `deadline`.
    fn flush_until(&self, deadline: Instant) {
        let mut s = self.lock();
        while !s.closed && (s.writing || !s.lines.is_empty()) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            s = self
                .emptied
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn dropped_notice(n: u64) -> String {
    let lines = if n == 1 { "line" } else { "lines" };
    let text = format!(
        "{n} console {lines} dropped: hotrun's output was not read fast enough (the log files have every line)"
    );
    if super::json() {
        String::from_utf8_lossy(&super::json_line(None, None, "hotrun", text.as_bytes()))
            .into_owned()
    } else {
        format!("hotrun: {text}\n")
    }
}

/// hotrun's stdout or stderr, written straight to the fd (no buffer of Rust's in the way).
struct Sink(Fd);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use nix::errno::Errno;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let raw = match self.0 {
            Fd::Out => 1,
            Fd::Err => 2,
        };
        // SAFETY: fds 1 and 2 stay open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        loop {
            match nix::unistd::write(fd, buf) {
                // Someone made the console non-blocking: wait until it takes more.
                Err(Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::NONE);
                }
                Err(Errno::EINTR) => {}
                other => return other.map_err(std::io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// A sink that blocks until `gate` is opened, then writes to `out`.
    struct Gated {
        gate: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_writer_and_hears_what_was_dropped() {
        let queue = Arc::new(Queue::new(100));
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut sink = Gated {
            gate: gate.clone(),
            out: out.clone(),
        };
        let q = queue.clone();
        let writer = std::thread::spawn(move || q.drain_into(&mut sink));
        // The writer takes the first line and blocks on it; the queue then fills.
        queue.push(b"first\n");
        // Until the writer holds it (on a loaded machine its thread starts late).
        let taken_by = Instant::now() + Duration::from_secs(10);
        while !queue.lock().lines.is_empty() && Instant::now() < taken_by {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..1000 {
            queue.push(format!("line {i:04}\n").as_bytes());
        }
        let kept = queue.lock().lines.len();
        assert!(
            kept <= 10,
            "the queue holds at most its capacity ({kept} lines)"
        );
        assert!(queue.lock().dropped > 900);
        // The reader catches up: every kept line whole and in order, then the notice.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        queue.push(b"after\n");
        queue.flush_until(Instant::now() + Duration::from_secs(10));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "first");
        assert!(lines.iter().all(|l| l.starts_with("line ")
            || *l == "first"
            || *l == "after"
            || l.contains("console lines dropped")));
        let notice = lines
            .iter()
            .find(|l| l.contains("dropped"))
            .expect("a notice");
        let n: u64 = notice
            .trim_start_matches("hotrun: ")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            n as usize + lines.len() - 1,
            1002,
            "every line is written or counted"
        );
        drop(writer);
    }

    #[test]
    fn a_console_that_is_gone_is_given_up_on() {
        let queue = Arc::new(Queue::new(1 << 20));
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let q = queue.clone();
        let writer = std::thread::spawn(move || q.drain_into(&mut ours));
        queue.push(b"lost\n");
        writer.join().unwrap();
        assert!(queue.lock().closed);
        queue.push(b"discarded\n");
        assert!(queue.lock().lines.is_empty());
        queue.flush_until(Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn flushing_waits_for_a_reader_and_gives_up_at_the_deadline() {
        let queue = Arc::new(Queue::new(1 << 20));
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let q = queue.clone();
        std::thread::spawn(move || q.drain_into(&mut ours));
        queue.push(b"hello\n");
        queue.flush_until(Instant::now() + Duration::from_secs(10));
        let mut buf = [0u8; 6];
        theirs.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello\n");
        // A reader that never reads: a socket buffer's worth, then the writer blocks.
        let big = vec![b'x'; 1 << 19];
        for _ in 0..4 {
            queue.push(&big);
        }
        let start = Instant::now();
        queue.flush_until(Instant::now() + Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
