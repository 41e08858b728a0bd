//! The little the client needs from a runtime: spawning a task, the clock,
//! sleeps and timeouts.
//!
//! Everywhere but the browser that is tokio (its clock, so that paused
//! time in tests applies). In a browser (wasm32) it is the page's event
//! loop: tasks through `wasm-bindgen-futures`, timers through
//! `gloo-timers` (`setTimeout`), the clock through `web-time`
//! (`performance.now()`); there is no tokio runtime, timer or socket there.
//! The rest of the client, the driver of the sans-IO session included, is
//! the same code on both.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub(crate) use web_time::Instant;

/// The time now.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The time now.
#[cfg(target_arch = "wasm32")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Runs `fut` on a task of its own.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(fut);
}

/// Runs `fut` on a task of its own, on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + 'static,
{
    wasm_bindgen_futures::spawn_local(fut);
}

/// As [`spawn`], but only when there is a runtime to spawn on (a `Drop`
/// may run outside one); false when there is none.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn try_spawn<F>(fut: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(fut);
            true
        }
        Err(_) => false,
    }
}

/// As [`spawn`]: a page always has its event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn try_spawn<F>(fut: F) -> bool
where
    F: Future<Output = ()> + 'static,
{
    spawn(fut);
    true
}

/// A deadline to wait for, which can be moved: the driver's one timer.
/// It completes once at its deadline; with none, it never does.
pub(crate) struct Timer {
    at: Option<Instant>,
    #[cfg(not(target_arch = "wasm32"))]
    sleep: Pin<Box<tokio::time::Sleep>>,
    #[cfg(target_arch = "wasm32")]
    sleep: Option<gloo_timers::future::TimeoutFuture>,
}

/// The longest a browser timer waits in one go (`setTimeout` takes a
/// signed 32-bit number of milliseconds); a later deadline is waited for
/// in steps.
#[cfg(target_arch = "wasm32")]
const MAX_TIMEOUT_MS: u128 = i32::MAX as u128;

impl Timer {
    /// A timer with no deadline.
    pub(crate) fn new() -> Timer {
        Timer {
            at: None,
            #[cfg(not(target_arch = "wasm32"))]
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            #[cfg(target_arch = "wasm32")]
            sleep: None,
        }
    }

    /// The deadline, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Moves the deadline (`None`: no deadline).
    pub(crate) fn reset(&mut self, at: Option<Instant>) {
        if at == self.at {
            return;
        }
        self.at = at;
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(at) = at {
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(at));
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.sleep = at.map(|at| {
                let ms = at.saturating_duration_since(now()).as_millis();
                // Rounded up, so that the deadline has passed when it fires.
                let ms = (ms + 1).min(MAX_TIMEOUT_MS) as u32;
                gloo_timers::future::TimeoutFuture::new(ms)
            });
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = at;
            std::task::ready!(self.sleep.as_mut().poll(cx));
        }
        #[cfg(target_arch = "wasm32")]
        loop {
            let Some(sleep) = self.sleep.as_mut() else {
                return Poll::Pending;
            };
            std::task::ready!(Pin::new(sleep).poll(cx));
            if now() >= at {
                break;
            }
            // A long deadline waited for in steps, or a timer that fired
            // early: wait for the rest.
            self.at = None;
            self.reset(Some(at));
        }
        self.at = None;
        Poll::Ready(())
    }
}

/// Waits `d`.
pub(crate) async fn sleep(d: Duration) {
    if d.is_zero() {
        return;
    }
    let mut t = Timer::new();
    t.reset(now().checked_add(d));
    if t.deadline().is_some() {
        t.await
    } else {
        // Too far to name: never.
        std::future::pending::<()>().await
    }
}

/// A future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// `fut`'s output, or [`Elapsed`] when `at` came first. A deadline too far
/// to name is no deadline.
pub(crate) async fn timeout_at<F: Future>(
    at: Option<Instant>,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let mut timer = Timer::new();
    timer.reset(at);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// `fut`'s output, or [`Elapsed`] when it takes longer than `d`.
pub(crate) async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(now().checked_add(d), fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timers_and_timeouts() {
        let t0 = now();
        sleep(Duration::from_millis(5)).await;
        assert!(now() >= t0 + Duration::from_millis(5));

        // A sleep far longer than the timeout: the timeout wins.
        let slow = sleep(Duration::from_secs(600));
        assert_eq!(timeout(Duration::from_millis(1), slow).await, Err(Elapsed));
        assert_eq!(timeout(Duration::from_secs(600), async { 7 }).await, Ok(7));
        // No deadline: the future decides.
        assert_eq!(timeout_at(None, async { 8 }).await, Ok(8));

        // A timer moved to an earlier deadline fires at that one.
        let mut timer = Timer::new();
        timer.reset(Some(now() + Duration::from_secs(600)));
        let t1 = now();
        timer.reset(Some(t1 + Duration::from_millis(2)));
        (&mut timer).await;
        assert!(now() >= t1 + Duration::from_millis(2));
        assert_eq!(timer.deadline(), None);
    }
}
