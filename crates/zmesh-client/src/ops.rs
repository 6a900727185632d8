//! Whole-blob operations: `put`, `get`, `rm`, over any [`ChunkStore`] (a [`Relay`](crate::Relay)
//! in real use). Chunks go one at a time, so memory stays at about two chunks whatever the size
//! of the file.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use zmesh_types::DataType;
use zmesh_types::constants::DATA_SHARDS;
use zmesh_wire::store::{Outcome, Status, StoreMessage};

use crate::blob::{self, BlobId, MAX_PLAINTEXT, Manifest, chunk_len, now_ms};
use crate::identity::{Identity, sync_dir};
use crate::relay::ChunkStore;
use crate::{ChunkRef, ClientError, Result};

/// Where a multi-chunk transfer is, reported after each data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Data chunks done so far (1-based after the first).
    pub chunks_done: u64,
    /// Data chunks in the blob, when known in advance.
    pub chunks_total: Option<u64>,
    /// Plaintext bytes done so far.
    pub bytes_done: u64,
}

/// What `put` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: BlobId,
    pub manifest: Manifest,
}

/// Stores the file at `path` as a new blob; see [`put_reader`].
///
/// # Errors
/// As [`put_reader`], and I/O errors opening the file.
pub async fn put_file<S: ChunkStore>(
    store: &S,
    identity: &Identity,
    path: &Path,
    data_type: DataType,
    progress: impl FnMut(&Progress),
) -> Result<Stored> {
    let file = fs::File::open(path)
        .map_err(|e| ClientError::io(format!("opening {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?
        .len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    put_reader(store, identity, file, Some(size), &name, data_type, progress).await
}

/// Reads `reader` to its end and stores it as a new blob: each data chunk sealed and put, then
/// the manifest. `size_hint` only serves progress reports; the manifest records what was read.
///
/// # Errors
/// I/O errors reading; the relay's refusals ([`ClientError::InsufficientStorage`],
/// [`ClientError::NoPlacement`], …) naming the chunk; network errors.
pub async fn put_reader<S: ChunkStore, R: Read>(
    store: &S,
    identity: &Identity,
    mut reader: R,
    size_hint: Option<u64>,
    name: &str,
    data_type: DataType,
    mut progress: impl FnMut(&Progress),
) -> Result<Stored> {
    let id = BlobId::random();
    let chunks_total = size_hint.map(blob::chunk_count);
    let mut buf = vec![0u8; MAX_PLAINTEXT];
    let mut size = 0u64;
    let mut index = 0u64;
    loop {
        let n = read_full(&mut reader, &mut buf)
            .map_err(|e| ClientError::io(format!("reading {name}"), e))?;
        if n == 0 {
            break;
        }
        let sealed = blob::seal_chunk(identity, id, index, &buf[..n]);
        put_chunk(store, identity, ChunkRef::Data(id, index), sealed, data_type).await?;
        size += n as u64;
        index += 1;
        progress(&Progress { chunks_done: index, chunks_total, bytes_done: size });
        if n < buf.len() {
            break;
        }
    }
    let manifest = Manifest::new(size, data_type, name);
    let sealed = manifest.seal(identity, id);
    put_chunk(store, identity, ChunkRef::Manifest(id), sealed, data_type).await?;
    Ok(Stored { id, manifest })
}

/// Fetches blob `id` into `out`: written to a temporary file beside it, checked against the
/// manifest, fsynced, then renamed over `out`, so `out` is never left half-written.
///
/// # Errors
/// [`ClientError::BlobNotFound`] if this identity has no such blob;
/// [`ClientError::NotEnoughShards`] naming the chunk and the counts; [`ClientError::Decrypt`]
/// or [`ClientError::Inconsistent`] if what came back is not what was stored; I/O errors.
pub async fn get<S: ChunkStore>(
    store: &S,
    identity: &Identity,
    id: BlobId,
    out: &Path,
    mut progress: impl FnMut(&Progress),
) -> Result<Manifest> {
    let sealed = get_chunk(store, identity, ChunkRef::Manifest(id)).await?;
    let manifest = Manifest::open(identity, id, &sealed)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.zmesh-part", BlobId::random()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| ClientError::io(format!("creating {}", tmp.display()), e))?;
    let result = async {
        let mut written = 0u64;
        for index in 0..manifest.chunks {
            let sealed = get_chunk(store, identity, ChunkRef::Data(id, index)).await?;
            let plain = blob::open_chunk(identity, id, index, &sealed)?;
            let expected = chunk_len(manifest.size, index);
            if plain.len() as u64 != expected {
                return Err(ClientError::Inconsistent {
                    id,
                    reason: format!(
                        "chunk {index} holds {} bytes, expected {expected}",
                        plain.len()
                    ),
                });
            }
            file.write_all(&plain)
                .map_err(|e| ClientError::io(format!("writing {}", tmp.display()), e))?;
            written += plain.len() as u64;
            progress(&Progress {
                chunks_done: index + 1,
                chunks_total: Some(manifest.chunks),
                bytes_done: written,
            });
        }
        if written != manifest.size {
            return Err(ClientError::Inconsistent {
                id,
                reason: format!("got {written} bytes, the manifest says {}", manifest.size),
            });
        }
        file.sync_all().map_err(|e| ClientError::io(format!("syncing {}", tmp.display()), e))?;
        fs::rename(&tmp, out).map_err(|e| {
            ClientError::io(format!("renaming {} to {}", tmp.display(), out.display()), e)
        })?;
        sync_dir(&dir)
    }
    .await;
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| manifest)
}

/// Deletes blob `id` everywhere and returns the number of shards deleted.
///
/// The manifest goes first, so the blob stops being readable at once. If the manifest cannot be
/// read (already deleted by an interrupted `rm`, or damaged), data chunks are deleted in order
/// until one is absent, so running `rm` again finishes an interrupted one.
///
/// # Errors
/// [`ClientError::BlobNotFound`] if nothing of the blob exists; refusals and network errors.
pub async fn rm<S: ChunkStore>(store: &S, identity: &Identity, id: BlobId) -> Result<u64> {
    let known_chunks = match get_chunk(store, identity, ChunkRef::Manifest(id)).await {
        Ok(sealed) => Manifest::open(identity, id, &sealed).ok().map(|m| m.chunks),
        Err(ClientError::BlobNotFound(_) | ClientError::NotEnoughShards { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut deleted = delete_chunk(store, identity, ChunkRef::Manifest(id)).await?.unwrap_or(0);
    match known_chunks {
        Some(n) => {
            for index in 0..n {
                let chunk = ChunkRef::Data(id, index);
                deleted += delete_chunk(store, identity, chunk).await?.unwrap_or(0);
            }
        }
        None => {
            for index in 0.. {
                match delete_chunk(store, identity, ChunkRef::Data(id, index)).await? {
                    Some(count) if count > 0 => deleted += count,
                    _ => break,
                }
            }
        }
    }
    if deleted == 0 && known_chunks.is_none() {
        return Err(ClientError::BlobNotFound(id));
    }
    Ok(deleted)
}

async fn put_chunk<S: ChunkStore>(
    store: &S,
    identity: &Identity,
    chunk: ChunkRef,
    sealed: Vec<u8>,
    data_type: DataType,
) -> Result<()> {
    let request = blob::put_request(identity, chunk, sealed, data_type, now_ms())?;
    match store.call(request).await? {
        StoreMessage::Result(o) if o.status == Status::Ok => {
            tracing::debug!(%chunk, placed = o.count, "chunk stored");
            Ok(())
        }
        StoreMessage::Result(o) => Err(refusal(chunk, o)),
        _ => Err(ClientError::UnexpectedResponse { request: "PutChunk" }),
    }
}

async fn get_chunk<S: ChunkStore>(
    store: &S,
    identity: &Identity,
    chunk: ChunkRef,
) -> Result<Vec<u8>> {
    match store.call(blob::get_request(identity, chunk, now_ms())).await? {
        StoreMessage::Chunk { outcome, chunk: bytes } if outcome.status == Status::Ok => Ok(bytes),
        StoreMessage::Chunk { outcome, .. } | StoreMessage::Result(outcome)
            if outcome.status != Status::Ok =>
        {
            Err(refusal(chunk, outcome))
        }
        _ => Err(ClientError::UnexpectedResponse { request: "GetChunk" }),
    }
}

/// Shards deleted, or `None` if the chunk did not exist.
async fn delete_chunk<S: ChunkStore>(
    store: &S,
    identity: &Identity,
    chunk: ChunkRef,
) -> Result<Option<u64>> {
    match store.call(blob::delete_request(identity, chunk, now_ms())).await? {
        StoreMessage::Result(o) if o.status == Status::Ok => Ok(Some(o.count.into())),
        StoreMessage::Result(o) if o.status == Status::NotFound => Ok(None),
        StoreMessage::Result(o) => Err(refusal(chunk, o)),
        _ => Err(ClientError::UnexpectedResponse { request: "DeleteChunk" }),
    }
}

/// The error for a non-OK outcome about `chunk`.
fn refusal(chunk: ChunkRef, o: Outcome) -> ClientError {
    let detail = if o.detail.is_empty() { format!("{:?}", o.status) } else { o.detail };
    match o.status {
        Status::InsufficientStorage => ClientError::InsufficientStorage { chunk, detail },
        Status::NoPlacement => ClientError::NoPlacement { chunk, detail },
        Status::Unauthorized => ClientError::Unauthorized { chunk, detail },
        Status::Replay => ClientError::Replay { chunk, detail },
        Status::NotFound => match chunk {
            ChunkRef::Manifest(id) => ClientError::BlobNotFound(id),
            ChunkRef::Data(..) => ClientError::ChunkNotFound(chunk),
        },
        Status::NotEnoughShards => ClientError::NotEnoughShards {
            chunk,
            found: o.count,
            needed: if o.needed == 0 { DATA_SHARDS as u16 } else { o.needed },
        },
        other => ClientError::Relay { chunk, status: format!("{other:?}"), detail },
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::future::Future;
    use std::sync::Mutex;

    use zmesh_core::erasure;
    use zmesh_core::storage_auth::{self, ReplayGuard};
    use zmesh_types::Key256;
    use zmesh_wire::store::{Op, OwnerAuth};

    use super::*;
    use crate::ErrorKind;
    use crate::blob::tests::identity;

    /// An in-memory relay that checks requests as holders would.
    #[derive(Default)]
    struct FakeRelay {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        chunks: HashMap<Key256, Vec<u8>>,
        guard: Option<ReplayGuard>,
        /// Chunk ids that answer NotEnoughShards with 9 healthy shards.
        degraded: HashSet<Vec<u8>>,
        /// Refuse puts after this many stored chunks.
        capacity: Option<usize>,
        requests: Vec<(Op, Vec<u8>)>,
    }

    impl FakeRelay {
        fn handle(&self, request: StoreMessage) -> StoreMessage {
            let mut s = self.state.lock().unwrap();
            let check = |s: &mut FakeState, auth: &OwnerAuth, op| {
                s.requests.push((op, auth.chunk_id.clone()));
                let guard = s.guard.get_or_insert_with(|| ReplayGuard::new(1024));
                storage_auth::verify(auth, op, now_ms(), guard)
            };
            match request {
                StoreMessage::PutChunk { auth, chunk } => {
                    if let Err(e) = check(&mut s, &auth, Op::Put) {
                        return StoreMessage::Result(Outcome::error(
                            Status::Unauthorized,
                            e.to_string(),
                        ));
                    }
                    let sums: Vec<[u8; 32]> = erasure::encode(auth.storage_key, &chunk)
                        .unwrap()
                        .iter()
                        .map(|s| s.header.checksum)
                        .collect();
                    assert_eq!(sums, auth.shard_checksums, "checksums must match the chunk");
                    if s.capacity.is_some_and(|c| s.chunks.len() >= c) {
                        return StoreMessage::Result(Outcome::error(
                            Status::InsufficientStorage,
                            "holders have 0 bytes free",
                        ));
                    }
                    s.chunks.insert(auth.storage_key, chunk);
                    StoreMessage::Result(Outcome::ok(15))
                }
                StoreMessage::GetChunk { auth } => {
                    let none = Vec::new();
                    if let Err(e) = check(&mut s, &auth, Op::Get) {
                        let outcome = Outcome::error(Status::Unauthorized, e.to_string());
                        return StoreMessage::Chunk { outcome, chunk: none };
                    }
                    if s.degraded.contains(&auth.chunk_id) {
                        let outcome = Outcome {
                            status: Status::NotEnoughShards,
                            detail: "9 of 15".into(),
                            count: 9,
                            needed: 10,
                        };
                        return StoreMessage::Chunk { outcome, chunk: none };
                    }
                    match s.chunks.get(&auth.storage_key) {
                        Some(c) => {
                            StoreMessage::Chunk { outcome: Outcome::ok(15), chunk: c.clone() }
                        }
                        None => StoreMessage::Chunk {
                            outcome: Outcome::error(Status::NotFound, "no such chunk"),
                            chunk: none,
                        },
                    }
                }
                StoreMessage::DeleteChunk { auth } => {
                    if let Err(e) = check(&mut s, &auth, Op::Delete) {
                        return StoreMessage::Result(Outcome::error(
                            Status::Unauthorized,
                            e.to_string(),
                        ));
                    }
                    match s.chunks.remove(&auth.storage_key) {
                        Some(_) => StoreMessage::Result(Outcome::ok(15)),
                        None => {
                            StoreMessage::Result(Outcome::error(Status::NotFound, "no such chunk"))
                        }
                    }
                }
                _ => StoreMessage::Result(Outcome::error(Status::BadRequest, "unexpected")),
            }
        }
    }

    impl ChunkStore for FakeRelay {
        fn call(&self, request: StoreMessage) -> impl Future<Output = Result<StoreMessage>> + Send {
            let answer = self.handle(request);
            async move { Ok(answer) }
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    async fn round_trip(len: usize) {
        let relay = FakeRelay::default();
        let me = identity();
        let input = data(len);
        let mut reports = vec![];
        let stored =
            put_reader(&relay, &me, &input[..], Some(len as u64), "f.bin", DataType::Media, |p| {
                reports.push(*p)
            })
            .await
            .unwrap();
        let chunks = blob::chunk_count(len as u64);
        assert_eq!(stored.manifest, Manifest::new(len as u64, DataType::Media, "f.bin"));
        assert_eq!(reports.len() as u64, chunks);
        assert_eq!(relay.state.lock().unwrap().chunks.len() as u64, chunks + 1);
        // Data first, manifest last.
        let puts = relay.state.lock().unwrap().requests.clone();
        assert_eq!(puts.last().unwrap().1, stored.id.manifest_chunk_id());

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.bin");
        let m = get(&relay, &me, stored.id, &out, |_| {}).await.unwrap();
        assert_eq!(m.size, len as u64);
        assert_eq!(fs::read(&out).unwrap(), input);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

        assert_eq!(rm(&relay, &me, stored.id).await.unwrap(), 15 * (chunks + 1));
        assert!(relay.state.lock().unwrap().chunks.is_empty());
        let e = get(&relay, &me, stored.id, &out, |_| {}).await.unwrap_err();
        assert!(matches!(e, ClientError::BlobNotFound(_)), "{e}");
        assert_eq!(e.to_string(), format!("not found: no blob {} for this identity", stored.id));
        assert!(matches!(rm(&relay, &me, stored.id).await, Err(ClientError::BlobNotFound(_))));
    }

    #[tokio::test]
    async fn empty_blobs_round_trip() {
        round_trip(0).await;
    }

    #[tokio::test]
    async fn one_byte_blobs_round_trip() {
        round_trip(1).await;
    }

    #[tokio::test]
    async fn exactly_one_chunk_round_trips() {
        round_trip(MAX_PLAINTEXT).await;
    }

    #[tokio::test]
    async fn one_chunk_and_one_byte_round_trips() {
        round_trip(MAX_PLAINTEXT + 1).await;
    }

    #[tokio::test]
    async fn put_file_records_the_name_and_reports_progress() {
        let relay = FakeRelay::default();
        let me = identity();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        fs::write(&path, data(1000)).unwrap();
        let mut reports = vec![];
        let stored =
            put_file(&relay, &me, &path, DataType::KeyBackup, |p| reports.push(*p)).await.unwrap();
        assert_eq!(stored.manifest.name, "photo.jpg");
        assert_eq!(stored.manifest.data_type, DataType::KeyBackup);
        assert_eq!(reports, [Progress { chunks_done: 1, chunks_total: Some(1), bytes_done: 1000 }]);
    }

    #[tokio::test]
    async fn too_few_shards_names_the_chunk_and_the_counts() {
        let relay = FakeRelay::default();
        let me = identity();
        let input = data(MAX_PLAINTEXT + 10);
        let stored =
            put_reader(&relay, &me, &input[..], None, "x", DataType::Media, |_| {}).await.unwrap();
        relay.state.lock().unwrap().degraded.insert(stored.id.data_chunk_id(1));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let e = get(&relay, &me, stored.id, &out, |_| {}).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("chunk 1 of blob {}: found 9 healthy shards, need 10", stored.id)
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!out.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "temporary file removed");
    }

    #[tokio::test]
    async fn a_full_relay_is_reported_with_its_reason() {
        let relay = FakeRelay::default();
        relay.state.lock().unwrap().capacity = Some(1);
        let me = identity();
        let input = data(MAX_PLAINTEXT + 10);
        let e = put_reader(&relay, &me, &input[..], None, "x", DataType::Media, |_| {})
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("insufficient storage for chunk 1 of blob "), "{e}");
        assert!(e.to_string().ends_with("holders have 0 bytes free"), "{e}");
        assert_eq!(e.kind(), ErrorKind::Refused);
    }

    #[tokio::test]
    async fn another_identity_cannot_read_or_delete() {
        let relay = FakeRelay::default();
        let me = identity();
        let stored = put_reader(&relay, &me, &b"secret"[..], None, "x", DataType::Media, |_| {})
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other = identity();
        // Its storage keys differ, so there is nothing under them.
        let e = get(&relay, &other, stored.id, &dir.path().join("o"), |_| {}).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(matches!(rm(&relay, &other, stored.id).await, Err(ClientError::BlobNotFound(_))));
        assert_eq!(relay.state.lock().unwrap().chunks.len(), 2);
    }

    #[tokio::test]
    async fn rm_finishes_an_interrupted_rm() {
        let relay = FakeRelay::default();
        let me = identity();
        let input = data(2 * MAX_PLAINTEXT);
        let stored =
            put_reader(&relay, &me, &input[..], None, "x", DataType::Media, |_| {}).await.unwrap();
        // The manifest is gone, the data chunks are not.
        let key = Key256::storage_key(&me.address(), &stored.id.manifest_chunk_id());
        relay.state.lock().unwrap().chunks.remove(&key);
        assert_eq!(rm(&relay, &me, stored.id).await.unwrap(), 30);
        assert!(relay.state.lock().unwrap().chunks.is_empty());
    }

    #[tokio::test]
    async fn a_relay_serving_the_wrong_chunk_is_caught() {
        let relay = FakeRelay::default();
        let me = identity();
        let input = data(2 * MAX_PLAINTEXT);
        let stored =
            put_reader(&relay, &me, &input[..], None, "x", DataType::Media, |_| {}).await.unwrap();
        {
            let mut s = relay.state.lock().unwrap();
            let k0 = Key256::storage_key(&me.address(), &stored.id.data_chunk_id(0));
            let k1 = Key256::storage_key(&me.address(), &stored.id.data_chunk_id(1));
            let c0 = s.chunks.remove(&k0).unwrap();
            let c1 = s.chunks.insert(k1, c0).unwrap();
            s.chunks.insert(k0, c1);
        }
        let dir = tempfile::tempdir().unwrap();
        let e = get(&relay, &me, stored.id, &dir.path().join("o"), |_| {}).await.unwrap_err();
        assert!(matches!(e, ClientError::Decrypt(ChunkRef::Data(_, 0))), "{e}");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
}
