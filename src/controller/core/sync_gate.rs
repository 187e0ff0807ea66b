//! The gate every reconcile waits on until the stores have listed.

/// A gate that opens when every watch has delivered its initial list. Reconciles wait on it,
/// so that no decision (tenancy, claimant order, policy lookup) is made from an empty store.
/// The default gate is open (tools and tests that fill the stores themselves).
#[derive(Clone)]
pub struct SyncGate {
    open: tokio::sync::watch::Receiver<bool>,
}

impl Default for SyncGate {
    fn default() -> Self {
        let (_, open) = tokio::sync::watch::channel(true);
        Self { open }
    }
}

impl SyncGate {
    /// A closed gate and the sender that opens it (send `true`).
    pub fn closed() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, open) = tokio::sync::watch::channel(false);
        (tx, Self { open })
    }

    /// Waits until the gate is open (at once when it is). A dropped sender leaves it as it was.
    pub async fn wait(&self) {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
    }

    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }
}
