//! Request frames used again: a caller encodes its request into a buffer
//! taken from the [`FramePool`], the session keeps it while the request
//! may be sent again, and once the request is answered the driver puts it
//! back. One request at a time or thousands in flight, a small request
//! then costs no allocation for its frame.

use std::sync::Mutex;

use bytes::BytesMut;

/// Buffers the pool keeps at most; more are dropped.
pub(crate) const MAX_FREE: usize = 1024;

/// Buffers larger than this are not kept (a request with large
/// variables does not hold its memory for the next ones).
pub(crate) const MAX_KEPT_CAPACITY: usize = 1024;

/// Free request buffers, shared by a client's handles and its driver.
#[derive(Debug, Default)]
pub(crate) struct FramePool {
    free: Mutex<Vec<BytesMut>>,
}

impl FramePool {
    /// An empty buffer with room for `capacity` bytes: a free one when
    /// there is one.
    pub(crate) fn take(&self, capacity: usize) -> BytesMut {
        let free = self.free.lock().map(|mut f| f.pop()).unwrap_or_default();
        match free {
            Some(mut b) => {
                b.clear();
                b.reserve(capacity);
                b
            }
            None => BytesMut::with_capacity(capacity),
        }
    }

    /// Takes back the buffers in `spent` (leaving it empty, its own
    /// memory kept): small ones while fewer than [`MAX_FREE`] are free.
    pub(crate) fn put_all(&self, spent: &mut Vec<BytesMut>) {
        if spent.is_empty() {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            for b in spent.drain(..) {
                if free.len() >= MAX_FREE {
                    break;
                }
                if b.capacity() <= MAX_KEPT_CAPACITY {
                    free.push(b);
                }
            }
        }
        spent.clear();
    }

    /// Free buffers now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_memory() {
        let pool = FramePool::default();
        let mut b = pool.take(64);
        assert!(b.capacity() >= 64);
        b.extend_from_slice(b"a request");
        let at = b.as_ptr();
        let mut spent = vec![b];
        pool.put_all(&mut spent);
        assert!(spent.is_empty());
        assert_eq!(pool.len(), 1);
        let again = pool.take(32);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert_eq!(pool.len(), 0);
        // Asked for more than it has: it grows.
        let mut spent = vec![again];
        pool.put_all(&mut spent);
        assert!(pool.take(512).capacity() >= 512);
    }

    #[test]
    fn large_buffers_and_more_than_the_cap_are_dropped() {
        let pool = FramePool::default();
        let mut spent = vec![BytesMut::with_capacity(MAX_KEPT_CAPACITY + 1)];
        pool.put_all(&mut spent);
        assert_eq!(pool.len(), 0);
        let mut spent: Vec<BytesMut> = (0..MAX_FREE + 10)
            .map(|_| BytesMut::with_capacity(16))
            .collect();
        pool.put_all(&mut spent);
        assert_eq!(pool.len(), MAX_FREE);
        assert!(spent.is_empty());
    }
}
