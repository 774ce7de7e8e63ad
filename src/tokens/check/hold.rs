//! Unit tests only: holds one store lookup open between the store's answer and its
//! use, so that a test can change the store meanwhile (the lookup race). The store is
//! the real one; only the moment is chosen by the test.

use std::sync::Mutex;

use tokio::sync::oneshot;

#[derive(Default)]
pub struct LookupHold {
    armed: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

/// The test's side of one held lookup.
pub struct Held {
    /// Resolves once the lookup has the store's answer and waits.
    pub reached: oneshot::Receiver<()>,
    /// Lets the lookup go on.
    pub release: oneshot::Sender<()>,
}

impl LookupHold {
    /// Holds the next lookup, once it has read the store.
    pub fn arm(&self) -> Held {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.armed.lock().unwrap() = Some((reached_tx, release_rx));
        Held { reached, release }
    }

    pub async fn pass(&self) {
        let armed = self.armed.lock().unwrap().take();
        if let Some((reached, release)) = armed {
            let _ = reached.send(());
            let _ = release.await;
        }
    }
}
