//! Reading an instance's pipe as lines, with bounded memory: a line longer than
//! `MAX_LINE` is handed on in pieces of that size; the last line is handed on at
//! end-of-file even without a newline. The pipe is read to its end, after the process
//! exits too, so nothing an instance wrote is lost.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest piece of a line kept in memory at once.
pub const MAX_LINE: usize = 64 * 1024;

/// Calls `emit` with each line (without its newline) until end-of-file or a read error.
/// `emit` returns false to stop reading early (the receiver is gone).
pub async fn read_lines<R, F, Fut>(pipe: R, emit: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    read_lines_until(pipe, std::future::pending::<()>(), emit).await;
}

/// `read_lines`, until `stop` completes: then the pipe is handed back with what was read
/// from it and not handed on yet (a line begun, bytes read ahead), so that another reader
/// (hotrun after an upgrade) goes on from there without a lost or torn line. `None` when
/// the pipe ended first.
pub async fn read_lines_until<R, S, F, Fut>(pipe: R, stop: S, mut emit: F) -> Option<(R, Vec<u8>)>
where
    R: AsyncRead + Unpin,
    S: std::future::Future<Output = ()>,
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    tokio::pin!(stop);
    loop {
        // Stopping between lines only: a line is handed on whole or not at all.
        let filled = tokio::select! {
            biased;
            _ = &mut stop => None,
            filled = reader.fill_buf() => Some(filled.map(|b| b.is_empty())),
        };
        let eof = match filled {
            None => {
                line.extend_from_slice(reader.buffer());
                return Some((reader.into_inner(), line));
            }
            Some(Ok(eof)) => eof,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Some(Err(_)) => break,
        };
        if eof {
            break;
        }
        let buf = reader.buffer();
        let room = MAX_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        let (taken, complete) = match memchr(window) {
            Some(i) => {
                line.extend_from_slice(&window[..i]);
                (i + 1, true)
            }
            None => {
                line.extend_from_slice(window);
                (window.len(), line.len() >= MAX_LINE)
            }
        };
        reader.consume(taken);
        if complete && !emit(std::mem::take(&mut line)).await {
            return None;
        }
    }
    if !line.is_empty() {
        emit(line).await;
    }
    None
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        read_lines(input, |l| {
            out.push(l);
            async { true }
        })
        .await;
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_last_one_without_newline() {
        let got = lines_of(b"a\nbb\n\nccc").await;
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"bb".to_vec(), b"".to_vec(), b"ccc".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_stopped_reader_hands_back_what_it_has_not_handed_on() {
        // Two whole lines and a begun one, in one read: the stop comes after the first
        // line was handed on (the sender is then slow), and nothing is lost or torn.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut stop_tx = Some(stop_tx);
        let mut got = Vec::new();
        let input: &[u8] = b"one\ntwo\nthr";
        let left = read_lines_until(input, async { stop_rx.await.unwrap_or(()) }, |l| {
            got.push(l);
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
            async { true }
        })
        .await;
        let (_, rest) = left.expect("stopped before the end");
        let mut whole = got.join(&b'\n');
        whole.push(b'\n');
        whole.extend_from_slice(&rest);
        assert_eq!(whole, input.to_vec());
        assert!(got.len() < 3, "{got:?}");
    }

    #[tokio::test]
    async fn long_lines_come_in_bounded_pieces() {
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let got = lines_of(&input).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].len(), MAX_LINE);
        assert_eq!(got[1].len(), MAX_LINE);
        assert_eq!(got[2].len(), 10);
        assert_eq!(got[3], b"next".to_vec());
    }
}
