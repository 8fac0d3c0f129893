//! `Maintenance.Snapshot`: the member's state as an etcd backend file (a bbolt database
//! in etcd's bucket layout, see [`crate::backup::layout`]) followed by its SHA-256,
//! streamed in chunks, so `etcdctl snapshot save/status/restore` work on raftkv.
//!
//! Consistency without holding up the Raft loop: the store is cloned under its read
//! lock (a copy of the in-memory indexes; keys and values are shared `Bytes`, not
//! copied), which pauses applies only for that copy; the file is then built from the
//! clone on a blocking thread while the loop goes on applying. The file holds exactly
//! the state at the clone's applied index.

use proto::etcdserverpb::{SnapshotRequest, SnapshotResponse};
use proto::prost::Message;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::auth::Authorizer;
use crate::handle::NodeHandle;

/// Bytes of file per streamed message (etcd sends 32 KiB chunks).
const CHUNK_BYTES: usize = 32 * 1024;

/// The snapshot file (database + SHA-256) of `store`.
pub fn snapshot_file(store: &kv::Store) -> Vec<u8> {
    let snapshot =
        proto::raftkvpb::StoreSnapshot::decode(store.snapshot().as_slice()).expect("a store decodes its own snapshot");
    let root = crate::backup::layout::database_from_snapshot(&snapshot);
    crate::backup::layout::with_digest(bbolt::write_database(&root))
}

/// Answers `Maintenance.Snapshot` (root only while auth is enabled, as etcd).
pub async fn snapshot(
    handle: &NodeHandle,
    authorizer: &Authorizer,
    request: Request<SnapshotRequest>,
) -> Result<Response<BoxStream<SnapshotResponse>>, Status> {
    authorizer.require_admin(request.metadata()).await?;
    let view = handle.read_view();
    let header = Some(handle.header(view.current_revision()));
    let started = std::time::Instant::now();
    let file = tokio::task::spawn_blocking(move || snapshot_file(&view))
        .await
        .map_err(|error| Status::internal(format!("building the snapshot failed: {error}")))?;
    tracing::info!(size_bytes = file.len(), took_ms = started.elapsed().as_millis() as u64, "sending snapshot");
    let total_bytes = file.len();
    let file = bytes::Bytes::from(file);
    let chunks = (0..total_bytes.div_ceil(CHUNK_BYTES)).map(move |index| {
        let end = ((index + 1) * CHUNK_BYTES).min(total_bytes);
        Ok(SnapshotResponse {
            header,
            remaining_bytes: (total_bytes - end) as u64,
            blob: file.slice(index * CHUNK_BYTES..end).to_vec(),
            ..SnapshotResponse::default()
        })
    });
    Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
}
