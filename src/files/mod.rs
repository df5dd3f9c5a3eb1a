//! The gateway's own file store for the Files API (`/v1/files`), for backends that have no
//! Batch API of their own: an upload streams to a temporary file under `[batches] dir` with a
//! byte cap (memory stays at one chunk, whatever the size), and becomes `<dir>/<id>.jsonl` with
//! a row in the store saying whose it is; batches write their output and error files here too.
//!
//! Every read is by owner (`project:<id>` with `[auth]`, else a hash of the client's
//! `Authorization`): another owner's file does not exist for them (404, as OpenAI answers).
//! Ids are checked for their exact shape before anything touches the disk, so no path a
//! client sends can name a file outside the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::auth::clock::Clock;
use crate::auth::store_unavailable;
use crate::error::GatewayError;
use crate::store::{OwnFileRow, Store};

/// How long a file is kept unless its upload (`expires_after`) or its batch
/// (`output_expires_after`) says otherwise: 30 days, OpenAI's default for `purpose=batch`.
pub const KEEP_SECONDS: i64 = 30 * 24 * 60 * 60;
/// The shortest expiry a client may ask for (OpenAI's range is 1 hour to 30 days).
const SHORTEST_KEEP: i64 = 3600;

/// The expiry a client asked for (`anchor` must be `created_at`, `seconds` 3600 to 2592000, as
/// OpenAI has them), or 400 naming `param`.
pub fn keep_seconds(anchor: &str, seconds: i64, param: &str) -> Result<i64, GatewayError> {
    let wrong = |what: &str, message: String| GatewayError::InvalidField {
        param: Some(format!("{param}.{what}")),
        message,
    };
    if anchor != "created_at" {
        return Err(wrong(
            "anchor",
            format!("`anchor` must be `created_at`, not `{anchor}`"),
        ));
    }
    if !(SHORTEST_KEEP..=KEEP_SECONDS).contains(&seconds) {
        let message = format!("`seconds` must be between {SHORTEST_KEEP} and {KEEP_SECONDS}");
        return Err(wrong("seconds", message));
    }
    Ok(seconds)
}
/// How often expired files are removed.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The file store of a running gateway.
#[derive(Debug)]
pub struct Files {
    store: Store,
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// Largest upload accepted.
    pub max_bytes: u64,
}

/// An upload in progress: bytes go to a temporary file, removed unless it is kept.
#[derive(Debug)]
pub struct Upload {
    file: tokio::fs::File,
    path: PathBuf,
    id: String,
    bytes: u64,
    cap: u64,
    kept: bool,
}

impl Upload {
    /// Appends `chunk`; 413 past the cap (the temporary file is then removed on drop).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), GatewayError> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.cap {
            return Err(GatewayError::BodyTooLarge {
                limit: usize::try_from(self.cap).unwrap_or(usize::MAX),
            });
        }
        self.file.write_all(chunk).await.map_err(disk)
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `id` has the shape of one of this store's file ids (`file-` and 32 hex digits).
pub fn is_file_id(id: &str) -> bool {
    id.strip_prefix("file-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn new_id() -> String {
    format!("file-{}", sortable_hex())
}

/// 32 hex digits that sort as they were made: milliseconds since the epoch, then randomness
/// (as a UUIDv7), so a listing newest first stays in creation order within one second.
pub fn sortable_hex() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{:012x}{}", ms & 0xffff_ffff_ffff, &random[..20])
}

fn disk(err: std::io::Error) -> GatewayError {
    GatewayError::Internal {
        message: format!("the file store could not be written or read: {err}"),
    }
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound {
        what: "file",
        id: id.to_owned(),
    }
}

/// Where files go without `[batches] dir`: beside a SQLite store (`<db file>.files`), else
/// `switchyard-files` beside the routes file.
pub fn default_dir(store_url: &str, config_path: &Path) -> PathBuf {
    let sqlite = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"));
    match sqlite.map(|rest| rest.split('?').next().unwrap_or(rest)) {
        Some(db) => PathBuf::from(format!("{db}.files")),
        None => config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("switchyard-files"),
    }
}

impl Files {
    /// The file store in `dir` (created with the first upload: a gateway that never takes
    /// one leaves no directory behind).
    pub fn open(store: Store, dir: &Path, clock: Arc<dyn Clock>, max_bytes: u64) -> Files {
        Files {
            store,
            dir: dir.to_owned(),
            clock,
            max_bytes,
        }
    }

    /// The store's clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Where file `id`'s bytes are (`id` already checked by `is_file_id` or made here).
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.jsonl"))
    }

    /// Starts an upload under a new id, of at most `cap` bytes.
    pub async fn begin(&self, cap: u64) -> Result<Upload, GatewayError> {
        let id = new_id();
        let path = self.dir.join(format!("{id}.part"));
        tokio::fs::create_dir_all(&self.dir).await.map_err(disk)?;
        let file = tokio::fs::File::create(&path).await.map_err(disk)?;
        Ok(Upload {
            file,
            path,
            id,
            bytes: 0,
            cap,
            kept: false,
        })
    }

    /// Keeps a finished upload as `owner`'s file for `keep_seconds`.
    pub async fn keep(
        &self,
        mut upload: Upload,
        (owner, filename, purpose): (&str, &str, &str),
        keep_seconds: i64,
    ) -> Result<OwnFileRow, GatewayError> {
        upload.file.flush().await.map_err(disk)?;
        upload.file.sync_all().await.map_err(disk)?;
        tokio::fs::rename(&upload.path, self.path(&upload.id))
            .await
            .map_err(disk)?;
        upload.kept = true;
        let now = self.now();
        let row = OwnFileRow {
            id: upload.id.clone(),
            owner: owner.to_owned(),
            purpose: purpose.to_owned(),
            filename: filename.to_owned(),
            bytes: i64::try_from(upload.bytes).unwrap_or(i64::MAX),
            created_at: now,
            expires_at: now + keep_seconds,
        };
        if let Err(err) = self.store.insert_own_file(&row).await {
            let _ = tokio::fs::remove_file(self.path(&row.id)).await;
            return Err(store_unavailable(err));
        }
        Ok(row)
    }

    /// `owner`'s file `id`, or 404.
    pub async fn get(&self, owner: &str, id: &str) -> Result<OwnFileRow, GatewayError> {
        if !is_file_id(id) {
            return Err(not_found(id));
        }
        self.store
            .own_file(owner, id, self.now())
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| not_found(id))
    }

    /// `owner`'s files, newest first (see `Store::own_files`).
    pub async fn list(
        &self,
        owner: &str,
        after: Option<&str>,
        purpose: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OwnFileRow>, GatewayError> {
        self.store
            .own_files(owner, after, purpose, (limit, self.now()))
            .await
            .map_err(store_unavailable)
    }

    /// Opens `owner`'s file `id` for reading.
    pub async fn open_file(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<(OwnFileRow, tokio::fs::File), GatewayError> {
        let row = self.get(owner, id).await?;
        let file = tokio::fs::File::open(self.path(&row.id))
            .await
            .map_err(|_| not_found(id))?;
        Ok((row, file))
    }

    /// Deletes `owner`'s file `id`, or 404.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<(), GatewayError> {
        if !is_file_id(id) {
            return Err(not_found(id));
        }
        let deleted = self
            .store
            .delete_own_file(owner, id)
            .await
            .map_err(store_unavailable)?;
        if !deleted {
            return Err(not_found(id));
        }
        let _ = tokio::fs::remove_file(self.path(id)).await;
        Ok(())
    }

    /// Removes expired files now and then, rows first (a file without its row is unreachable).
    pub fn spawn_purge(files: &Arc<Files>) {
        let weak = Arc::downgrade(files);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            loop {
                tick.tick().await;
                let Some(files) = weak.upgrade() else { return };
                match files.store.purge_own_files(files.now()).await {
                    Ok(ids) => {
                        for id in ids {
                            let _ = tokio::fs::remove_file(files.path(&id)).await;
                        }
                    }
                    Err(err) => tracing::warn!(%err, "could not purge expired files"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_id_shape_is_a_file_id() {
        assert!(is_file_id("file-0123456789abcdef0123456789abcdef"));
        for bad in [
            "file-../../etc/passwd",
            "file-0123456789abcdef0123456789abcde",
            "file-0123456789abcdef0123456789abcdefg",
            "batch_0123456789abcdef0123456789abcdef",
            "file-0123456789abcdef0123456789abc/ef",
            "",
        ] {
            assert!(!is_file_id(bad), "{bad}");
        }
    }
}
