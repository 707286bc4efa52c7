//! Async code (sqlx, async-nats) run to completion from a test.
//!
//! The harness is synchronous, but some tests are `#[tokio::test]`s: a helper called from inside
//! their runtime must not start a second runtime on the same thread, so it runs on a thread of
//! its own while the caller waits.

use std::future::Future;

/// Runs `f` on a small runtime of its own, on this thread. Not for use inside a runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Runs `f` to completion wherever the caller is: on this thread outside a runtime, on a
/// helper thread inside one (whose runtime is blocked meanwhile, as a synchronous call would).
pub(crate) fn block_on_anywhere<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return block_on(f);
    }
    std::thread::scope(|s| {
        s.spawn(move || block_on(f))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
