//! Which connections wait for a request and which are serving one, so that
//! idle connections cannot starve a scraper.
//!
//! Every connection is accepted at once (a limit taken before `accept`
//! leaves new clients in the kernel's backlog behind idle ones). A
//! connection that has not sent a complete request yet (a new one, a TLS
//! handshake, an idle keep-alive) is *waiting*; at most `max` wait, and
//! when one more arrives the one that has waited longest is closed. A
//! scraper sends its request at once, so it is the newest waiting
//! connection for the moment it takes to send it and then no longer
//! waiting: closing the oldest never hits it, while clients that connect
//! and send nothing are the ones closed. Connections serving a request are
//! not closed; with `max` waiting and `max` serving, a new connection is
//! closed at once.
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// The connections of a listener.
#[derive(Default)]
pub struct Conns {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Waiting connections by when they started waiting (a sequence).
    waiting: BTreeMap<u64, Arc<Notify>>,
    serving: usize,
    seq: u64,
}

impl Inner {
    fn wait(&mut self, shed: &Arc<Notify>, max: usize) -> u64 {
        while self.waiting.len() >= max.max(1) {
            match self.waiting.pop_first() {
                // notify_one keeps the permit when the task is not
                // waiting on it yet.
                Some((_, oldest)) => oldest.notify_one(),
                None => break,
            }
        }
        self.seq += 1;
        self.waiting.insert(self.seq, shed.clone());
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
        let seq = g.wait(&shed, max);
        Some(Conn {
            conns: self.clone(),
            shed,
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
            *st = State::Waiting(g.wait(&c.shed, self.max));
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
}
