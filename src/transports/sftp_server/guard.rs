//! A guard on the SFTP byte stream: it follows the packet framing (a 4-byte big-endian length, then that many
//! bytes) and ends the stream when a client announces a packet longer than the cap. russh-sftp refuses such a
//! packet without allocating it, but carries on reading; a client that breaks the protocol like that is cut off.
//! It also records when SFTP bytes last arrived ([`Activity`]): SSH keepalives do not count as activity, so a
//! session that only sends keepalives is still closed at the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the guard is in the framing.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Reading a length: the bytes seen so far and how many.
    Length([u8; 4], usize),
    /// Inside a packet body: bytes left.
    Body(u64),
    /// A packet over the cap was announced: the stream has ended.
    Ended,
}

/// When a connection's SFTP channels last received bytes from the client.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Records activity now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last activity.
    pub fn idle_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Wraps a stream, ending it when an announced SFTP packet exceeds `max`.
pub struct PacketGuard<S> {
    inner: S,
    max: u32,
    frame: Frame,
    activity: Option<Arc<Activity>>,
}

impl<S> PacketGuard<S> {
    /// Guards `inner` with the packet cap `max`.
    pub fn new(inner: S, max: u32) -> PacketGuard<S> {
        PacketGuard {
            inner,
            max,
            frame: Frame::Length([0; 4], 0),
            activity: None,
        }
    }

    /// Records in `activity` each time bytes arrive.
    pub fn with_activity(mut self, activity: Arc<Activity>) -> PacketGuard<S> {
        self.activity = Some(activity);
        self
    }

    /// Follows `bytes` through the framing; returns how many of them may pass (all, unless a packet over the cap
    /// starts among them, in which case its length bytes and everything after are withheld).
    fn follow(&mut self, bytes: &[u8]) -> usize {
        let mut i = 0;
        let mut frame_start = 0;
        while i < bytes.len() {
            match &mut self.frame {
                Frame::Ended => return frame_start,
                Frame::Length(buf, got) => {
                    if *got == 0 {
                        frame_start = i;
                    }
                    buf[*got] = bytes[i];
                    *got += 1;
                    i += 1;
                    if *got == 4 {
                        let len = u32::from_be_bytes(*buf);
                        self.frame = if len > self.max {
                            Frame::Ended
                        } else if len == 0 {
                            Frame::Length([0; 4], 0)
                        } else {
                            Frame::Body(u64::from(len))
                        };
                        if matches!(self.frame, Frame::Ended) {
                            return frame_start;
                        }
                    }
                }
                Frame::Body(left) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        self.frame = Frame::Length([0; 4], 0);
                    }
                }
            }
        }
        bytes.len()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacketGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if matches!(self.frame, Frame::Ended) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(activity) = &this.activity {
                    activity.touch();
                }
                let fresh = buf.filled()[before..].to_vec();
                let pass = this.follow(&fresh);
                buf.set_filled(before + pass);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PacketGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn packet(len: u32, body: u8) -> Vec<u8> {
        let mut p = len.to_be_bytes().to_vec();
        p.extend(std::iter::repeat_n(body, len as usize));
        p
    }

    #[tokio::test]
    async fn good_packets_pass_and_an_oversized_one_ends_the_stream() {
        let mut input = packet(5, 1);
        input.extend(packet(0, 0));
        input.extend(packet(3, 2));
        let good = input.len();
        input.extend(0xFFFF_FFFFu32.to_be_bytes());
        input.extend([9; 32]);
        let mut guard = PacketGuard::new(&input[..], 1024);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, input[..good]);
    }

    #[tokio::test]
    async fn framing_is_followed_across_small_reads() {
        let mut input = packet(10, 7);
        input.extend(2000u32.to_be_bytes());
        let mut guard = PacketGuard::new(&input[..], 1024);
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while guard.read(&mut byte).await.expect("read") == 1 {
            out.push(byte[0]);
        }
        // One byte at a time, the oversized length's first bytes have already passed; then the stream ends.
        assert!(out.len() >= 14 && out.len() < input.len(), "{}", out.len());
    }
}
