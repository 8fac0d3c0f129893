//! [`StoreViews`]: the latest read view of the store, published by the apply loop after
//! every apply batch and snapshot restore, read by client handlers without ever waiting
//! for apply (a `kv::Store` clone shares its structure, so publishing is cheap).

use std::sync::{Arc, Mutex};

/// The latest published view of the store. The mutex is held only to clone or swap an
/// `Arc`, never while a reader reads or the apply loop applies.
#[derive(Debug, Default)]
pub struct StoreViews {
    latest: Mutex<Arc<kv::Store>>,
}

impl StoreViews {
    /// Views starting from `store`.
    pub fn new(store: &kv::Store) -> StoreViews {
        StoreViews { latest: Mutex::new(Arc::new(store.clone())) }
    }

    /// Publishes the state of `store` (called by the apply loop); a view never goes back.
    pub fn publish(&self, store: &kv::Store) {
        let view = Arc::new(store.clone());
        let mut latest = self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        assert!(view.applied_index() >= latest.applied_index(), "published views only move forward");
        *latest = view;
    }

    /// The newest published view.
    pub fn latest(&self) -> Arc<kv::Store> {
        Arc::clone(&self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::etcdserverpb::PutRequest;

    #[test]
    fn a_held_view_stays_while_newer_ones_are_published() {
        let mut store = kv::Store::default();
        let views = StoreViews::new(&store);
        let put = PutRequest { key: b"k".to_vec().into(), value: b"v".to_vec().into(), ..Default::default() };
        store.apply(1, &kv::Command::new(kv::Operation::Put(put)));
        let before = views.latest();
        views.publish(&store);
        assert_eq!(before.current_revision(), 1, "a held view is unchanged");
        assert_eq!(views.latest().current_revision(), 2, "readers see the published apply");
    }
}
