//! Which connections wait for a request and which are serving one, so that
//! idle connections cannot starve a scraper.
//!
//! Every connection is accepted at once (a limit taken before `accept`
//! leaves new clients in the kernel's backlog behind idle ones). A
//! connection that has not sent a complete request yet (a new one, a TLS
//! handshake, an idle keep-alive) is *waiting*; at most `max` wait, and
//! when one more arrives one of them is closed: the one that has waited
//! longest among those that have sent nothing since they started waiting,
//! and only when every waiting one has sent something, the longest-waiting
//! of all. A scraper sends its request at once, so its connection has sent
//! bytes (its request is being read) and is spared while clients that
//! connect and send nothing are closed; a client that sends a byte now and
//! then to be spared is still cut off by `header_timeout`. Connections
//! serving a request are not closed; with `max` waiting and `max` serving,
//! a new connection is closed at once.
//!
//! What a connection has sent is seen through [`Marked`], a wrapper of its
//! socket below TLS and HTTP.
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The connections of a listener.
#[derive(Default)]
pub struct Conns {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Waiting connections by when they started waiting (a sequence): how
    /// to close each, and whether it has sent bytes since.
    waiting: BTreeMap<u64, (Arc<Notify>, Arc<AtomicBool>)>,
    serving: usize,
    seq: u64,
}

impl Inner {
    fn wait(&mut self, shed: &Arc<Notify>, heard: &Arc<AtomicBool>, max: usize) -> u64 {
        while self.waiting.len() >= max.max(1) {
            // At most `max` entries: a scan is cheap.
            let silent = self
                .waiting
                .iter()
                .find(|(_, (_, h))| !h.load(Ordering::Relaxed))
                .map(|(k, _)| *k);
            let victim = silent.or_else(|| self.waiting.keys().next().copied());
            match victim.and_then(|k| self.waiting.remove(&k)) {
                // notify_one keeps the permit when the task is not
                // waiting on it yet.
                Some((oldest, _)) => oldest.notify_one(),
                None => break,
            }
        }
        self.seq += 1;
        heard.store(false, Ordering::Relaxed);
        self.waiting.insert(self.seq, (shed.clone(), heard.clone()));
        self.seq
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting(u64),
    Serving,
    Shed,
}

/// One connection's place in [`Conns`]; leaves it when dropped.
pub struct Conn {
    conns: Arc<Conns>,
    shed: Arc<Notify>,
    /// Set by [`Marked`] when bytes arrive; cleared when it waits anew.
    heard: Arc<AtomicBool>,
    state: Mutex<State>,
}

/// Held while a request is served; the connection waits again when it is
/// dropped.
pub struct Serving<'a> {
    conn: &'a Conn,
    max: usize,
}

impl Conns {
    /// Admit a new connection as waiting, closing the longest-waiting one
    /// if `max` already wait; `None` when `max` wait and `max` are serving
    /// (close the new one).
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<Conn> {
        let max = max.max(1);
        let mut g = self.inner.lock();
        if g.serving >= max && g.waiting.len() >= max {
            return None;
        }
        let shed = Arc::new(Notify::new());
        let heard = Arc::new(AtomicBool::new(false));
        let seq = g.wait(&shed, &heard, max);
        Some(Conn {
            conns: self.clone(),
            shed,
            heard,
            state: Mutex::new(State::Waiting(seq)),
        })
    }

    /// Connections waiting and serving now.
    pub fn counts(&self) -> (usize, usize) {
        let g = self.inner.lock();
        (g.waiting.len(), g.serving)
    }
}

impl Conn {
    /// Note that the connection has sent bytes (see [`Marked`]).
    pub fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// `socket`, reporting to this connection when bytes arrive.
    pub fn mark<S>(&self, socket: S) -> Marked<S> {
        Marked {
            inner: socket,
            heard: self.heard.clone(),
        }
    }

    /// Resolves when the connection was closed to make room.
    pub async fn shed(&self) {
        self.shed.notified().await
    }

    /// A request arrived whole: no longer waiting until the guard drops.
    pub fn serving(&self, max: usize) -> Serving<'_> {
        let mut g = self.conns.inner.lock();
        let mut st = self.state.lock();
        if let State::Waiting(seq) = *st {
            if g.waiting.remove(&seq).is_some() {
                g.serving += 1;
                *st = State::Serving;
            } else {
                *st = State::Shed;
            }
        }
        Serving { conn: self, max }
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let c = self.conn;
        let mut g = c.conns.inner.lock();
        let mut st = c.state.lock();
        if *st == State::Serving {
            g.serving -= 1;
            *st = State::Waiting(g.wait(&c.shed, &c.heard, self.max));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut g = self.conns.inner.lock();
        match *self.state.lock() {
            State::Waiting(seq) => {
                g.waiting.remove(&seq);
            }
            State::Serving => g.serving -= 1,
            State::Shed => {}
        }
    }
}

/// A connection's socket that tells its [`Conn`] when bytes arrive.
pub struct Marked<S> {
    inner: S,
    heard: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Marked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.heard.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Marked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waiting_is_shed_and_serving_ones_are_kept() {
        let conns = Arc::new(Conns::default());
        let a = conns.admit(2).expect("a");
        let b = conns.admit(2).expect("b");
        let busy = b.serving(2);
        let c = conns.admit(2).expect("c");
        assert_eq!(conns.counts(), (2, 1));
        // a waited longest: shed to admit d.
        let d = conns.admit(2).expect("d");
        assert_eq!(conns.counts(), (2, 1));
        let shed = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt")
            .block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(100), a.shed())
                    .await
                    .is_ok()
            });
        assert!(shed, "a was told to close");
        drop(a);
        assert_eq!(conns.counts(), (2, 1));
        // Two serving and two waiting: a fifth is refused.
        let _busy_c = c.serving(2);
        let e = conns.admit(2).expect("e");
        assert_eq!(conns.counts(), (2, 2));
        assert!(conns.admit(2).is_none());
        drop(busy);
        // b waits again, as the newest; d is the oldest now.
        assert_eq!(conns.counts(), (2, 1));
        drop((d, e, b));
        assert_eq!(conns.counts(), (0, 1));
    }

    #[test]
    fn a_connection_that_sent_bytes_is_spared_while_silent_ones_wait() {
        let conns = Arc::new(Conns::default());
        let scraper = conns.admit(2).expect("scraper");
        scraper.heard();
        let idle = conns.admit(2).expect("idle");
        // A third: the silent one goes, though the scraper waited longer.
        let _new = conns.admit(2).expect("new");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("rt");
        let told = |c: &Conn| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_millis(50), c.shed())
                    .await
                    .is_ok()
            })
        };
        assert!(told(&idle), "the silent connection was closed");
        assert!(!told(&scraper), "the one that sent bytes was kept");
    }
}
