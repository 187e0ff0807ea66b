//! The one shutdown signal of the process: SIGTERM or Ctrl-C (SIGINT) cancels a
//! [`CancellationToken`] that every task watches; a second signal exits at once.
//!
//! Owns the process's signal handlers. Must not stop tasks itself: each task drains and stops
//! on its own when the token fires.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Exit status when a second signal cuts the graceful shutdown short (128 + SIGINT, as shells do).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Installs the signal handlers and returns the token they cancel. Must be called inside a
/// Tokio runtime. The handlers are in place when this returns, so a signal arriving right
/// after is not lost (nor does it kill the process the default way).
pub fn shutdown_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let signals = Signals::install()?;
    tokio::spawn(cancel_on_signals(
        token.clone(),
        move || {
            // `signals` moves into this closure; each call waits for the next signal.
            let signals = signals.clone();
            async move { signals.next().await }
        },
        || std::process::exit(FORCED_EXIT_CODE),
    ));
    Ok(token)
}

/// Cancels `token` on the first signal, calls `force_exit` on the second.
async fn cancel_on_signals<S, F>(
    token: CancellationToken,
    mut next_signal: impl FnMut() -> S,
    force_exit: F,
) where
    S: Future<Output = &'static str>,
    F: FnOnce(),
{
    let first = next_signal().await;
    tracing::info!(
        signal = first,
        "shutting down: draining in-flight work (send the signal again to exit at once)"
    );
    token.cancel();
    let second = next_signal().await;
    tracing::warn!(signal = second, "second signal: exiting without draining");
    force_exit();
}

/// The registered signal streams, shared by the waiting closure.
#[derive(Clone)]
struct Signals {
    #[cfg(unix)]
    inner: std::sync::Arc<tokio::sync::Mutex<UnixSignals>>,
}

#[cfg(unix)]
struct UnixSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = UnixSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        };
        Ok(Self {
            inner: std::sync::Arc::new(tokio::sync::Mutex::new(signals)),
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the next signal and names it.
    #[cfg(unix)]
    async fn next(&self) -> &'static str {
        let mut signals = self.inner.lock().await;
        let UnixSignals {
            terminate,
            interrupt,
        } = &mut *signals;
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::mpsc;

    use super::*;

    #[tokio::test]
    async fn first_signal_cancels_and_second_forces_exit() {
        let token = CancellationToken::new();
        let (send_signal, receive_signal) = mpsc::unbounded_channel::<&'static str>();
        let receive_signal = Arc::new(tokio::sync::Mutex::new(receive_signal));
        let forced = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(cancel_on_signals(
            token.clone(),
            move || {
                let receive_signal = receive_signal.clone();
                async move { receive_signal.lock().await.recv().await.unwrap_or("closed") }
            },
            {
                let forced = forced.clone();
                move || forced.store(true, Ordering::SeqCst)
            },
        ));

        assert!(!token.is_cancelled());
        send_signal.send("SIGTERM").unwrap();
        token.cancelled().await;
        assert!(
            !forced.load(Ordering::SeqCst),
            "one signal only drains, it does not exit"
        );

        send_signal.send("SIGINT").unwrap();
        task.await.unwrap();
        assert!(forced.load(Ordering::SeqCst));
    }
}
