//! The bounded waits of the tests: nothing waits for ever, and nothing sleeps to order events.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 50 ms until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let steps = (within.as_millis() / 50).max(1);
    for _ in 0..steps {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within {within:?}: {what}");
}

/// Awaits `work`, failing the test rather than hanging it when it is not done `within`.
pub async fn within<T>(within: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(within, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {within:?}"))
}
