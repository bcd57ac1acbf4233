//! What the store tests share.

use std::future::Future;

/// Runs `attempt(n)` for every `n` below `count` at once, each on a task of its own: what
/// succeeded, and what was refused.
pub async fn at_once<T, F, Fut>(count: usize, attempt: F) -> (Vec<T>, Vec<civic_kit::Error>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = civic_kit::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..count).map(|n| tokio::spawn(attempt(n))).collect();
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.expect("the attempt ran to its end") {
            Ok(t) => done.push(t),
            Err(e) => refused.push(e),
        }
    }
    (done, refused)
}
