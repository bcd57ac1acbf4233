//! The background tasks of a process — relays, consumers, caches kept fresh, resolvers — owned
//! in one place, so that shutdown waits for every one of them to finish instead of leaving them
//! to be dropped mid-write.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// A task's name and its handle.
type Named = (&'static str, JoinHandle<()>);

/// The tasks a process has started. Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    #[expect(clippy::disallowed_types, reason = "pushed and taken without .await inside")]
    running: Arc<std::sync::Mutex<Vec<Named>>>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` in the background as one of this set. It must end by itself once the
    /// process's shutdown is signalled (select on `Shutdown::wait`).
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name, handle));
    }

    /// Waits for every task (those started meanwhile too) to finish, at most `grace` in all; a
    /// task still running then is named in the log and aborted.
    pub async fn join(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let next = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let Some((name, mut handle)) = next else { return };
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) if error.is_panic() => tracing::error!(task = name, "a background task panicked"),
                Ok(Err(_)) => {}
                Err(_) => {
                    tracing::warn!(task = name, "a background task did not stop in time; aborting it");
                    handle.abort();
                }
            }
        }
    }

    /// How many tasks the set holds (finished or not).
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_waits_for_tasks_and_aborts_the_stuck() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tasks.spawn("finishes", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(());
        });
        tasks.spawn("stuck", std::future::pending());
        assert_eq!(tasks.len(), 2);
        tasks.join(Duration::from_millis(200)).await;
        assert!(rx.await.is_ok(), "the finishing task ran to its end");
        assert!(tasks.is_empty());
    }
}
