//! A node's service time: it handles QUERY and RUN one at a time, each
//! taking the same time, as a real node's single thread does.

use std::time::{Duration, Instant};

/// One node's schedule. The time is accounted, not spent: a request
/// received at `now` is done at `max(now, next_free) + time`, and the
/// connection writes its reply then (on a timer), so a node never serves
/// more than one request per `time`, however many are pipelined to it,
/// and burns no CPU doing so. Timer lateness does not add up: the
/// schedule advances by exactly `time` per request.
#[derive(Debug, Default)]
pub(crate) struct Service {
    time: Duration,
    next_free: Option<Instant>,
}

impl Service {
    pub(crate) fn new(time: Duration) -> Service {
        Service {
            time,
            next_free: None,
        }
    }

    pub(crate) fn time(&self) -> Duration {
        self.time
    }

    /// Sets the time of the requests received from now on (zero: none);
    /// requests already scheduled keep their times.
    pub(crate) fn set_time(&mut self, time: Duration) {
        self.time = time;
    }

    /// Books the node for one request received at `now`; returns when it
    /// is done, or `None` when there is no service time.
    pub(crate) fn reserve(&mut self, now: Instant) -> Option<Instant> {
        if self.time.is_zero() {
            return None;
        }
        let start = match self.next_free {
            Some(t) if t > now => t,
            _ => now,
        };
        let done = start + self.time;
        self.next_free = Some(done);
        Some(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_time_books_nothing() {
        let mut s = Service::default();
        assert_eq!(s.reserve(Instant::now()), None);
    }

    #[test]
    fn requests_received_together_are_served_one_after_another() {
        let t = Duration::from_millis(5);
        let mut s = Service::new(t);
        let now = Instant::now();
        let done: Vec<Instant> = (0..20).filter_map(|_| s.reserve(now)).collect();
        for (k, d) in done.iter().enumerate() {
            assert_eq!(*d, now + t * (k as u32 + 1));
        }
    }

    #[test]
    fn an_idle_node_starts_at_once() {
        let t = Duration::from_millis(5);
        let mut s = Service::new(t);
        let now = Instant::now();
        assert_eq!(s.reserve(now), Some(now + t));
        // Received long after the node became free: served from then.
        let later = now + Duration::from_secs(1);
        assert_eq!(s.reserve(later), Some(later + t));
        // Received while busy: after the one before.
        assert_eq!(s.reserve(later), Some(later + 2 * t));
    }

    #[test]
    fn a_new_time_applies_to_later_requests() {
        let mut s = Service::new(Duration::from_millis(5));
        let now = Instant::now();
        s.reserve(now);
        s.set_time(Duration::from_millis(1));
        assert_eq!(s.reserve(now), Some(now + Duration::from_millis(6)));
        s.set_time(Duration::ZERO);
        assert_eq!(s.reserve(now), None);
        assert_eq!(s.time(), Duration::ZERO);
    }
}
