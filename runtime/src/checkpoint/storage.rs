//! Checkpoints and savepoints in object storage.
//!
//! Layout under a job's root (`state.storage` of the StreamJob):
//!
//! ```text
//! runs/<run>                                one object per run that started here
//! shared/<store>-<file>.sst                 table files, uploaded once, shared by checkpoints
//! chk-<run>-<epoch>/<operator>/<subtask>/…  the small private RocksDB files of one snapshot
//! chk-<run>-<epoch>/_manifest               written last: the checkpoint exists once it does
//! savepoints/sp-<epoch>-<id>/…              self-contained copies (or borrowed, below)
//! pins/<savepoint>/<checkpoint folder>       a borrowed savepoint's hold on its checkpoint
//! ```
//!
//! A stop before a rescale hands its savepoint over instead of
//! copying it: the savepoint's manifest is written at once and refers to the
//! final checkpoint's files (`borrowed`, see [`Manifest::borrowed`]); a pin keeps
//! that checkpoint from garbage collection until the next run — which restores
//! from it meanwhile — has copied the files in
//! ([`CheckpointStorage::complete_borrowed_savepoints`]).
//!
//! Checkpoints are named by run and epoch (see [`super::run`]): epochs restart with
//! every run, so several runs' checkpoints can share the folder, and the newest is
//! the newest of the newest run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path as LocalPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use super::commit::finish_commits;
use super::manifest::{
    BORROWED_MANIFEST_FORMAT_VERSION, MANIFEST_FILE, MANIFEST_FORMAT_VERSION, Manifest, SHARED_DIR,
    SnapshotFile, SnapshotKind, checkpoint_dir_name, parse_checkpoint_dir_name, plan_collection,
};
use super::retention::{SavepointAge, SavepointRetention, savepoints_to_delete};
use super::run::{RunId, RunRecord, SnapshotId};
use crate::state::LocalSnapshot;
use crate::state::codec::STATE_FORMAT;

/// Objects downloaded or copied at once by a restore or a savepoint (Flink's
/// RocksDB backend transfers 4 files at a time too).
const CONCURRENT_TRANSFERS: usize = 4;

/// Why checkpoint storage could not be reached, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL cannot be used.
    #[error("state storage {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store refused an operation.
    #[error("{operation} {path}: {source}")]
    ObjectStore {
        /// What was being done.
        operation: &'static str,
        /// The object or prefix (its URL where the storage is known).
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The local path.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A manifest is not valid JSON of the expected shape.
    #[error("manifest {path} is unreadable: {source}")]
    Manifest {
        /// Where the manifest is stored.
        path: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A manifest was written by a newer Strom, in a format this one cannot read.
    #[error(
        "manifest {path} has format version {version}; this Strom reads up to {BORROWED_MANIFEST_FORMAT_VERSION}: restore it with a newer Strom"
    )]
    NewerFormat {
        /// Where the manifest is stored.
        path: String,
        /// Its format version.
        version: u32,
    },
    /// The snapshot's state is encoded in a format newer than this runtime reads.
    #[error(
        "manifest {path} holds state in format {state_format}; this Strom reads up to {STATE_FORMAT}: restore it with a newer Strom"
    )]
    NewerStateFormat {
        /// Where the manifest is stored.
        path: String,
        /// The state format of its snapshot.
        state_format: u32,
    },
    /// A borrowed savepoint was read from somewhere other than its job's
    /// `savepoints/` folder, so the checkpoint files it refers to cannot be found.
    #[error(
        "savepoint {path} still refers to the files of its job's checkpoint (the run restoring it copies them in): restore it from its job's savepoints/ folder, or once that run has completed it"
    )]
    BorrowedElsewhere {
        /// Where the savepoint was read.
        path: String,
    },
}

/// Where a job resuming from its storage goes on.
#[derive(Debug, Clone)]
pub enum ResumePoint {
    /// The newest checkpoint of the newest run.
    Checkpoint(SnapshotLocation, Manifest),
    /// The newest run completed no checkpoint: where it started (its record, with
    /// the URL of the point it restored and its lineage; nothing if it started
    /// from empty state).
    StartOf(Option<RunRecord>),
}

/// The folder, relative to a job's root, with one object per run started there.
const RUNS_DIR: &str = "runs";
/// The folder of a job's savepoints.
const SAVEPOINTS_DIR: &str = "savepoints";
/// The folder of pins: an empty object `pins/<savepoint>/<checkpoint folder>` per
/// borrowed savepoint, keeping the checkpoint it refers to.
const PINS_DIR: &str = "pins";

/// Whether `name` is one of the folders a job's own layout has at its root
/// (rather than the folder of one of its deployments, see [`super::newest`]).
pub(crate) fn is_layout_folder(name: &str) -> bool {
    [RUNS_DIR, SAVEPOINTS_DIR, SHARED_DIR, PINS_DIR].contains(&name)
        || parse_checkpoint_dir_name(name).is_some()
}

fn store_error(
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(object_store::Error) -> StorageError {
    let path = path.to_string();
    move |source| StorageError::ObjectStore {
        operation,
        path,
        source,
    }
}

fn io_error(
    operation: &'static str,
    path: &LocalPath,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.display().to_string();
    move |source| StorageError::Io {
        operation,
        path,
        source,
    }
}

/// Opens the object store named by `url` (`file:///…` or `s3://bucket/prefix`) with
/// `options` (non-secret object_store settings such as `endpoint` or `allow_http`).
/// S3 credentials come from the environment (`AWS_ACCESS_KEY_ID`, …), where the
/// operator puts the keys of `state.storageSecret`.
pub fn open_store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let parsed = Url::parse(url).map_err(|error| StorageError::Url {
        url: url.to_owned(),
        reason: error.to_string(),
    })?;
    let url_error = |error: object_store::Error| StorageError::Url {
        url: url.to_owned(),
        reason: error.to_string(),
    };
    match parsed.scheme() {
        "file" => {
            let (store, path) = object_store::parse_url(&parsed).map_err(url_error)?;
            Ok((Arc::from(store), path))
        }
        "s3" => {
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_url(url.to_owned());
            for (key, value) in options {
                let key = key.parse().map_err(url_error)?;
                builder = builder.with_config(key, value);
            }
            let store = builder.build().map_err(url_error)?;
            let path = Path::from_url_path(parsed.path()).map_err(|error| StorageError::Url {
                url: url.to_owned(),
                reason: error.to_string(),
            })?;
            Ok((Arc::new(store), path))
        }
        other => Err(StorageError::Url {
            url: url.to_owned(),
            reason: format!("unsupported scheme {other:?}: use s3:// or file://"),
        }),
    }
}

/// Where a manifest lives and how the paths inside it resolve.
#[derive(Debug, Clone)]
pub struct SnapshotLocation {
    /// The folder holding the `_manifest`.
    pub dir: Path,
    /// The folder that the manifest's file paths are relative to: the job's root for
    /// a checkpoint, the savepoint's own folder for a savepoint.
    pub base: Path,
}

impl SnapshotLocation {
    /// Where the files of `manifest`, read from this location, are: a borrowed
    /// savepoint's are its job's checkpoint files, under the folder holding
    /// `savepoints/`.
    pub fn resolved_for(self, manifest: &Manifest) -> Result<Self, StorageError> {
        if !manifest.borrowed {
            return Ok(self);
        }
        let parts: Vec<_> = self.dir.parts().collect();
        match parts.len().checked_sub(2) {
            Some(root) if parts[root].as_ref() == SAVEPOINTS_DIR => Ok(Self {
                base: Path::from_iter(parts[..root].iter().cloned()),
                dir: self.dir,
            }),
            _ => Err(StorageError::BorrowedElsewhere {
                path: self.dir.to_string(),
            }),
        }
    }
}

/// A job's checkpoints and savepoints in object storage.
#[derive(Debug, Clone)]
pub struct CheckpointStorage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// The URL of the store's root (`file:///`, `s3://bucket/`), to name locations.
    store_url: String,
    /// The object_store options it was opened with (also for sinks' commits).
    options: BTreeMap<String, String>,
}

impl CheckpointStorage {
    /// Storage for the job whose files live at `url` (`file://` or `s3://`).
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StorageError> {
        let (store, root) = open_store(url, options)?;
        let parsed = Url::parse(url).expect("open_store parsed it");
        let store_url = format!(
            "{}://{}/",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        );
        Ok(Self {
            store,
            root,
            store_url,
            options: options.clone(),
        })
    }

    /// The storage of the job whose `savepoints/` folder holds the savepoint at
    /// `url` (for a borrowed savepoint, the folder its files are in).
    pub fn of_savepoint(
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, StorageError> {
        let trimmed = url.trim_end_matches('/');
        match trimmed.rsplitn(3, '/').collect::<Vec<_>>().as_slice() {
            [_, SAVEPOINTS_DIR, root] => Self::open(root, options),
            _ => Err(StorageError::BorrowedElsewhere {
                path: url.to_owned(),
            }),
        }
    }

    /// The URL of `path` in this store, as `strom run --from-savepoint` takes it.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}{path}", self.store_url)
    }

    /// An error of `operation` on `path`, named by its full URL.
    fn error(
        &self,
        operation: &'static str,
        path: &Path,
    ) -> impl FnOnce(object_store::Error) -> StorageError {
        let path = self.url_of(path);
        move |source| StorageError::ObjectStore {
            operation,
            path,
            source,
        }
    }

    /// The object_store options it was opened with.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The job's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn under(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Uploads the files of one subtask's local snapshot for `checkpoint`.
    /// Table files are immutable: one already in `uploaded` (this store's earlier
    /// checkpoints) is referred to again, not sent again. `store_id` names the
    /// RocksDB instance, so its table file names never collide with another's.
    pub async fn upload_snapshot(
        &self,
        snapshot: &LocalSnapshot,
        operator: &str,
        subtask: u32,
        checkpoint: &SnapshotId,
        store_id: &str,
        uploaded: &mut BTreeMap<String, SnapshotFile>,
    ) -> Result<Vec<SnapshotFile>, StorageError> {
        let mut files = Vec::new();
        for (name, info) in &snapshot.table_files {
            let mut file = match uploaded.get(name) {
                Some(file) => file.clone(),
                None => {
                    let path = format!("{SHARED_DIR}/{store_id}-{name}");
                    let file = self
                        .upload_file(&snapshot.dir.join(name), name, path)
                        .await?;
                    uploaded.insert(name.clone(), file.clone());
                    file
                }
            };
            // A file keeps its keys but may have moved to another level since.
            file.table = Some(*info);
            files.push(file);
        }
        uploaded.retain(|name, _| snapshot.table_files.contains_key(name));
        let private = format!("{}/{operator}/{subtask}", checkpoint_dir_name(checkpoint));
        for name in &snapshot.meta_files {
            let path = format!("{private}/{name}");
            files.push(
                self.upload_file(&snapshot.dir.join(name), name, path)
                    .await?,
            );
        }
        Ok(files)
    }

    async fn upload_file(
        &self,
        local: &LocalPath,
        name: &str,
        path: String,
    ) -> Result<SnapshotFile, StorageError> {
        let bytes = tokio::fs::read(local)
            .await
            .map_err(io_error("read", local))?;
        let size = bytes.len() as u64;
        let location = self.under(&path);
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(self.error("upload", &location))?;
        Ok(SnapshotFile {
            name: name.to_owned(),
            path,
            size,
            table: None,
        })
    }

    /// Writes the manifest that completes a checkpoint (in `chk-<run>-<epoch>/`).
    pub async fn complete_checkpoint(&self, manifest: &Manifest) -> Result<(), StorageError> {
        let location = self
            .under(&checkpoint_dir_name(&manifest.id()))
            .join(MANIFEST_FILE);
        self.put_manifest(&location, manifest).await
    }

    /// Records that a run starts here, before it writes anything: its staged sink
    /// output can then be told from that of jobs this storage knows nothing of, and
    /// a later `--resume` knows where it started.
    pub async fn record_run(&self, record: &RunRecord) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(record).expect("a run serializes to JSON");
        self.put_object(&format!("{RUNS_DIR}/{}", record.run.id), json)
            .await
    }

    /// Where a job resuming from this storage goes on: the newest checkpoint of the
    /// newest run, or, when the newest run completed none, the point that run
    /// started from. Storage written before runs were recorded: the newest
    /// checkpoint.
    pub async fn resume_point(&self) -> Result<ResumePoint, StorageError> {
        let completed = self.completed_checkpoints().await?;
        let newest_run = self
            .list_folder(RUNS_DIR)
            .await?
            .iter()
            .filter_map(|name| name.parse::<RunId>().ok())
            .max();
        let newest_checkpoint = completed.last().copied();
        match (newest_run, newest_checkpoint) {
            (Some(run), checkpoint) if checkpoint.is_none_or(|c| c.run < run) => {
                let record = self.run_record(&format!("{RUNS_DIR}/{run}")).await?;
                Ok(match record.restored_from {
                    Some(_) => ResumePoint::StartOf(Some(record)),
                    None => ResumePoint::StartOf(None),
                })
            }
            (_, Some(checkpoint)) => {
                let location = self.checkpoint_location(&checkpoint);
                let manifest = self.read_manifest(&location).await?;
                Ok(ResumePoint::Checkpoint(location, manifest))
            }
            (_, None) => Ok(ResumePoint::StartOf(None)),
        }
    }

    /// Every run this storage knows of: those recorded as started here, and those
    /// whose checkpoint folders it holds (completed or not).
    pub async fn known_runs(&self) -> Result<BTreeSet<RunId>, StorageError> {
        let mut runs: BTreeSet<RunId> = self
            .list_folder(RUNS_DIR)
            .await?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        for folder in self.checkpoint_folders().await? {
            runs.insert(folder.0.run);
        }
        Ok(runs)
    }

    /// The checkpoint folders at the job's root, with their ids.
    async fn checkpoint_folders(&self) -> Result<Vec<(SnapshotId, Path)>, StorageError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(self.error("list", &self.root))?;
        Ok(listing
            .common_prefixes
            .into_iter()
            .filter_map(|prefix| {
                let id = prefix.filename().and_then(parse_checkpoint_dir_name)?;
                Some((id, prefix))
            })
            .collect())
    }

    async fn put_manifest(&self, location: &Path, manifest: &Manifest) -> Result<(), StorageError> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest serializes to JSON");
        self.store
            .put(location, PutPayload::from(json))
            .await
            .map_err(self.error("write manifest", location))?;
        Ok(())
    }

    /// Writes `bytes` to `relative` (a path under the job's folder), for state that
    /// operators keep beside checkpoints.
    pub async fn put_object(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let location = self.under(relative);
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(self.error("write", &location))?;
        Ok(())
    }

    /// The content of `relative` (a path under the job's folder).
    pub async fn get_object(&self, relative: &str) -> Result<Bytes, StorageError> {
        let location = self.under(relative);
        let result = self
            .store
            .get(&location)
            .await
            .map_err(self.error("read", &location))?;
        result.bytes().await.map_err(self.error("read", &location))
    }

    /// Whether `relative` (a path under the job's folder) exists.
    pub async fn object_exists(&self, relative: &str) -> Result<bool, StorageError> {
        let location = self.under(relative);
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(self.error("check", &location)(error)),
        }
    }

    /// What is directly in the folder `relative` (`""`: the job's root).
    async fn listing(&self, relative: &str) -> Result<object_store::ListResult, StorageError> {
        let folder = self.under(relative);
        self.store
            .list_with_delimiter(Some(&folder))
            .await
            .map_err(self.error("list", &folder))
    }

    /// The names of the objects directly in the folder `relative`.
    pub async fn list_folder(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .listing(relative)
            .await?
            .objects
            .iter()
            .filter_map(|object| object.location.filename().map(str::to_owned))
            .collect())
    }

    /// The names of the folders directly in the folder `relative` (`""`: the
    /// job's root).
    pub async fn list_subfolders(&self, relative: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .listing(relative)
            .await?
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename().map(str::to_owned))
            .collect())
    }

    /// The completed savepoints in the job's `savepoints/` folder (those whose
    /// manifest is written), with their manifests, in no order.
    pub async fn completed_savepoints(
        &self,
    ) -> Result<Vec<(SnapshotLocation, Manifest)>, StorageError> {
        let mut completed = Vec::new();
        for name in self.list_subfolders(SAVEPOINTS_DIR).await? {
            let dir = self.under(SAVEPOINTS_DIR).join(name);
            let location = SnapshotLocation {
                base: dir.clone(),
                dir,
            };
            match self.read_manifest(&location).await {
                Ok(manifest) => completed.push((location, manifest)),
                // Being written, or being deleted.
                Err(StorageError::ObjectStore {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(completed)
    }

    /// Deletes the savepoints of this folder that `retention` does not keep at
    /// `now_ms` (see [`super::retention`]), never the point the folder's newest
    /// run restored from nor a borrowed one; their URLs.
    pub async fn dispose_old_savepoints(
        &self,
        retention: &SavepointRetention,
        now_ms: u64,
    ) -> Result<Vec<String>, StorageError> {
        if *retention == SavepointRetention::default() {
            return Ok(Vec::new());
        }
        let savepoints = self.completed_savepoints().await?;
        let ages: Vec<SavepointAge> = savepoints
            .iter()
            .map(|(location, manifest)| SavepointAge {
                url: self.url_of(&location.dir),
                completed_at_ms: manifest.completed_at_ms,
            })
            .collect();
        let newest_run = self
            .list_folder(RUNS_DIR)
            .await?
            .iter()
            .filter_map(|name| name.parse::<RunId>().ok())
            .max();
        let mut protected = Vec::new();
        if let Some(run) = newest_run {
            let record = self.run_record(&format!("{RUNS_DIR}/{run}")).await?;
            protected.extend(record.restored_from);
        }
        // A borrowed savepoint waits until it is completed (its completion may be
        // copying into its folder now).
        for (name, _) in self.pins().await? {
            protected.push(self.url_of(&self.under(SAVEPOINTS_DIR).join(name.as_str())));
        }
        let doomed = savepoints_to_delete(&ages, retention, &protected, now_ms);
        for (location, _) in &savepoints {
            if doomed.contains(&self.url_of(&location.dir)) {
                self.delete_folder(&location.dir).await?;
            }
        }
        Ok(doomed)
    }

    /// Deletes `relative` (a path under the job's folder), if it exists.
    pub async fn delete_object(&self, relative: &str) -> Result<(), StorageError> {
        self.delete_if_present(&self.under(relative)).await
    }

    /// Reads the manifest of the checkpoint or savepoint in `location`.
    pub async fn read_manifest(
        &self,
        location: &SnapshotLocation,
    ) -> Result<Manifest, StorageError> {
        read_manifest(&self.store, location).await
    }

    /// The completed checkpoints (those with a manifest), oldest first: by run, then
    /// epoch.
    pub async fn completed_checkpoints(&self) -> Result<Vec<SnapshotId>, StorageError> {
        let mut completed = Vec::new();
        for (id, folder) in self.checkpoint_folders().await? {
            match self.store.head(&folder.clone().join(MANIFEST_FILE)).await {
                Ok(_) => completed.push(id),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.error("read", &folder)(error)),
            }
        }
        completed.sort_unstable();
        Ok(completed)
    }

    /// The location of checkpoint `id`.
    pub fn checkpoint_location(&self, id: &SnapshotId) -> SnapshotLocation {
        SnapshotLocation {
            dir: self.under(&checkpoint_dir_name(id)),
            base: self.root.clone(),
        }
    }

    /// The newest completed checkpoint (of the newest run), if any.
    pub async fn latest_checkpoint(
        &self,
    ) -> Result<Option<(SnapshotLocation, Manifest)>, StorageError> {
        let Some(id) = self.completed_checkpoints().await?.pop() else {
            return Ok(None);
        };
        let location = self.checkpoint_location(&id);
        let manifest = self.read_manifest(&location).await?;
        Ok(Some((location, manifest)))
    }

    /// The newest completed checkpoint of a run whose lineage restored `point`, if
    /// any.
    pub async fn latest_checkpoint_restored_through(
        &self,
        points: &[SnapshotId],
    ) -> Result<Option<(SnapshotLocation, Manifest)>, StorageError> {
        if points.is_empty() {
            return Ok(None);
        }
        for id in self.completed_checkpoints().await?.into_iter().rev() {
            let location = self.checkpoint_location(&id);
            let manifest = self.read_manifest(&location).await?;
            if points.iter().any(|point| manifest.restored_through(point)) {
                return Ok(Some((location, manifest)));
            }
        }
        Ok(None)
    }

    /// The points that runs recorded here restored from `url` (a savepoint's or
    /// checkpoint's URL): read from the run records, so found when the snapshot
    /// itself has been deleted since.
    pub async fn points_restored_from(&self, url: &str) -> Result<Vec<SnapshotId>, StorageError> {
        let mut points = Vec::new();
        for name in self.list_folder(RUNS_DIR).await? {
            if name.parse::<RunId>().is_err() {
                continue;
            }
            let record = self.run_record(&format!("{RUNS_DIR}/{name}")).await?;
            if record.restored_from.as_deref() == Some(url) {
                // The restored point is the last of the run's ancestry.
                points.extend(record.run.ancestry.last().copied());
            }
        }
        Ok(points)
    }

    async fn run_record(&self, relative: &str) -> Result<RunRecord, StorageError> {
        let json = self.get_object(relative).await?;
        serde_json::from_slice(&json).map_err(|source| StorageError::Manifest {
            path: self.url_of(&self.under(relative)),
            source,
        })
    }

    /// Finishes the sink commits of every completed checkpoint here. Each manifest
    /// is a commit decision, also one of a run that was abandoned; commits are
    /// idempotent. Returns the number of objects moved now.
    pub async fn finish_all_commits(&self) -> Result<usize, StorageError> {
        let mut moved = 0;
        for manifest in self.completed_manifests().await? {
            moved += finish_commits(&manifest, &self.options).await?;
        }
        Ok(moved)
    }

    /// Keeps the newest `retained` checkpoints, `copying` (one being copied into
    /// a savepoint) and those borrowed savepoints refer to (`pins/`), and deletes
    /// the others with every file that only they referred to. A checkpoint's sink
    /// commits are finished before its manifest goes. Returns the number of
    /// objects deleted.
    pub async fn collect_garbage(
        &self,
        retained: usize,
        copying: Option<SnapshotId>,
    ) -> Result<usize, StorageError> {
        // The pins are listed before the manifests: a savepoint handed over later
        // pins a checkpoint newer than every one this collection may delete.
        let mut pinned: BTreeSet<SnapshotId> = copying.into_iter().collect();
        pinned.extend(
            self.pins()
                .await?
                .into_iter()
                .map(|(_, checkpoint)| checkpoint),
        );
        let manifests = self.completed_manifests().await?;
        let plan = plan_collection(&manifests, retained, &pinned);
        for manifest in manifests
            .iter()
            .filter(|manifest| plan.checkpoints.contains(&manifest.id()))
        {
            finish_commits(manifest, &self.options).await?;
        }
        for id in &plan.checkpoints {
            // The manifest goes first: a half-deleted checkpoint must not look complete.
            let manifest = self.under(&checkpoint_dir_name(id)).join(MANIFEST_FILE);
            self.delete_if_present(&manifest).await?;
        }
        for path in &plan.files {
            self.delete_if_present(&self.under(path)).await?;
        }
        Ok(plan.checkpoints.len() + plan.files.len())
    }

    /// The manifests of every completed checkpoint, oldest first.
    pub async fn completed_manifests(&self) -> Result<Vec<Manifest>, StorageError> {
        let mut manifests = Vec::new();
        for id in self.completed_checkpoints().await? {
            manifests.push(self.read_manifest(&self.checkpoint_location(&id)).await?);
        }
        Ok(manifests)
    }

    /// Deletes what failed attempts and earlier collections left behind: every file
    /// in `shared/` and in checkpoint folders that no completed checkpoint refers to.
    /// Only safe while no checkpoint is being written (at job start, before the
    /// first epoch).
    pub async fn remove_orphans(&self) -> Result<usize, StorageError> {
        let manifests = self.completed_manifests().await?;
        let completed: BTreeSet<SnapshotId> = manifests.iter().map(Manifest::id).collect();
        let referenced: BTreeSet<&str> = manifests.iter().flat_map(|m| m.file_paths()).collect();
        let listing = self
            .store
            .list_with_delimiter(Some(&self.root))
            .await
            .map_err(self.error("list", &self.root))?;
        let mut folders = Vec::new();
        for prefix in listing.common_prefixes {
            let name = prefix.filename().unwrap_or_default();
            if name == SHARED_DIR || parse_checkpoint_dir_name(name).is_some() {
                folders.push(prefix);
            }
        }
        let mut deleted = 0;
        for folder in folders {
            let files: Vec<_> = self
                .store
                .list(Some(&folder))
                .try_collect()
                .await
                .map_err(self.error("list", &folder))?;
            for file in files {
                let relative = relative_path(&self.root, &file.location);
                let is_live_manifest = file.location.filename() == Some(MANIFEST_FILE)
                    && folder
                        .filename()
                        .and_then(parse_checkpoint_dir_name)
                        .is_some_and(|id| completed.contains(&id));
                if !is_live_manifest && !referenced.contains(relative.as_str()) {
                    self.delete_if_present(&file.location).await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Copies the checkpoint `manifest` into a self-contained savepoint folder under
    /// `savepoints/` and returns its location.
    pub async fn write_savepoint(
        &self,
        manifest: &Manifest,
    ) -> Result<SnapshotLocation, StorageError> {
        let dir = self.under(SAVEPOINTS_DIR).join(savepoint_name(manifest));
        let result = self.copy_into_savepoint(manifest, &dir).await;
        if result.is_err()
            && let Err(error) = self.delete_folder(&dir).await
        {
            tracing::warn!(%error, savepoint = %dir, "cannot remove the failed savepoint's files");
        }
        result
    }

    /// Makes the checkpoint `manifest` completed a savepoint without copying it:
    /// a borrowed savepoint ([`Manifest::borrowed`]) that refers to the
    /// checkpoint's files, which its pin keeps until a run of this job completes
    /// it ([`Self::complete_borrowed_savepoints`]). For a stop whose savepoint the
    /// next run restores at once; its location.
    pub async fn hand_over_savepoint(
        &self,
        manifest: &Manifest,
    ) -> Result<SnapshotLocation, StorageError> {
        let name = savepoint_name(manifest);
        let dir = self.under(SAVEPOINTS_DIR).join(name.as_str());
        // The pin first: a borrowed savepoint is never without it.
        let pin = pin_path(&name, &manifest.id());
        self.put_object(&pin, Vec::new()).await?;
        let mut savepoint = manifest.clone();
        savepoint.kind = SnapshotKind::Savepoint;
        savepoint.borrowed = true;
        savepoint.format_version = BORROWED_MANIFEST_FORMAT_VERSION;
        // A failed write keeps its pin (the manifest may have been written all the
        // same): the next completion removes it, or completes the savepoint.
        self.put_manifest(&dir.clone().join(MANIFEST_FILE), &savepoint)
            .await?;
        Ok(SnapshotLocation {
            base: self.root.clone(),
            dir,
        })
    }

    /// Completes every borrowed savepoint of this job: copies the files of the
    /// checkpoint it refers to into its folder, rewrites its manifest
    /// self-contained, then removes its pin (so its checkpoint is collected as
    /// usual). Returns the URLs of the savepoints completed. A failure leaves the
    /// savepoint borrowed and pinned, for the next call.
    ///
    /// `only` limits it to the savepoint of that folder name, and then a pin
    /// whose savepoint has no manifest stays: in another job's folder, that job
    /// may be handing it over right now.
    pub async fn complete_borrowed_savepoints(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<String>, StorageError> {
        let mut completed = Vec::new();
        let pins = self.pins().await?;
        for (name, checkpoint) in pins
            .into_iter()
            .filter(|(name, _)| only.is_none_or(|only| only == name))
        {
            let dir = self.under(SAVEPOINTS_DIR).join(name.as_str());
            let location = SnapshotLocation {
                base: self.root.clone(),
                dir: dir.clone(),
            };
            match self.read_manifest(&location).await {
                Ok(manifest) if manifest.borrowed => {
                    self.copy_into_savepoint(&manifest, &dir).await?;
                    completed.push(self.url_of(&dir));
                }
                // Completed before, but its pin not removed yet.
                Ok(_) => {}
                // Never written: a pin of another job's folder may be of a
                // hand-over under way there.
                Err(StorageError::ObjectStore {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) if only.is_some() => continue,
                // Its hand-over failed (or it was deleted since).
                Err(StorageError::ObjectStore {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => {}
                Err(error) => return Err(error),
            }
            self.delete_object(&pin_path(&name, &checkpoint)).await?;
        }
        Ok(completed)
    }

    /// Every pin of a borrowed savepoint: the savepoint's folder name and the
    /// checkpoint it keeps.
    async fn pins(&self) -> Result<Vec<(String, SnapshotId)>, StorageError> {
        let folder = self.under(PINS_DIR);
        let objects: Vec<_> = match self.store.list(Some(&folder)).try_collect().await {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(error) => return Err(self.error("list", &folder)(error)),
        };
        Ok(objects
            .iter()
            .filter_map(|object| {
                let parts: Vec<_> = object.location.prefix_match(&folder)?.collect();
                match parts.as_slice() {
                    [savepoint, checkpoint] => Some((
                        savepoint.as_ref().to_owned(),
                        parse_checkpoint_dir_name(checkpoint.as_ref())?,
                    )),
                    _ => None,
                }
            })
            .collect())
    }

    /// Deletes every object under `dir`, its manifest first (a half-deleted
    /// snapshot must not look complete).
    async fn delete_folder(&self, dir: &Path) -> Result<(), StorageError> {
        self.delete_if_present(&dir.clone().join(MANIFEST_FILE))
            .await?;
        let objects: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(self.error("list", dir))?;
        for object in objects {
            self.delete_if_present(&object.location).await?;
        }
        if self.store_url == "file:///" {
            // A local folder keeps its (now empty) directories: they go too.
            let local = std::path::PathBuf::from(format!("/{dir}"));
            match tokio::fs::remove_dir_all(&local).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("delete", &local)(error)),
            }
        }
        Ok(())
    }

    /// The copy of [`Self::write_savepoint`], into `dir`.
    async fn copy_into_savepoint(
        &self,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<SnapshotLocation, StorageError> {
        let mut savepoint = manifest.clone();
        savepoint.kind = SnapshotKind::Savepoint;
        savepoint.borrowed = false;
        savepoint.format_version = MANIFEST_FORMAT_VERSION;
        for (operator, subtasks) in &mut savepoint.operators {
            for subtask in subtasks.iter() {
                for object in &subtask.objects {
                    let from = self.under(object);
                    let to = object
                        .split('/')
                        .fold(dir.clone(), |path, part| path.join(part));
                    match self.store.copy(&from, &to).await {
                        // Used up meanwhile (see `SubtaskSnapshot::objects`).
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(error) => return Err(self.error("copy", &from)(error)),
                    }
                }
            }
            // The table files, copied by the store (nothing passes through here),
            // several at a time.
            let mut copies = Vec::new();
            for subtask in subtasks.iter_mut() {
                for file in &mut subtask.files {
                    let relative = format!("{operator}/{}/{}", subtask.subtask, file.name);
                    let to = relative
                        .split('/')
                        .fold(dir.clone(), |path, part| path.join(part));
                    copies.push((self.under(&file.path), to));
                    file.path = relative;
                }
            }
            futures::stream::iter(copies.into_iter().map(|(from, to)| async move {
                self.store
                    .copy(&from, &to)
                    .await
                    .map_err(self.error("copy", &from))
            }))
            .buffer_unordered(CONCURRENT_TRANSFERS)
            .try_collect::<()>()
            .await?;
        }
        self.put_manifest(&dir.clone().join(MANIFEST_FILE), &savepoint)
            .await?;
        Ok(SnapshotLocation {
            base: dir.clone(),
            dir: dir.clone(),
        })
    }

    async fn delete_if_present(&self, location: &Path) -> Result<(), StorageError> {
        match self.store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error("delete", location)(error)),
        }
    }
}

/// The folder name of a new savepoint of `manifest`'s checkpoint:
/// `sp-<epoch>-<random>`, zero-padded so that names sort by epoch.
fn savepoint_name(manifest: &Manifest) -> String {
    format!(
        "sp-{:020}-{}",
        manifest.epoch,
        uuid::Uuid::new_v4().simple()
    )
}

/// The pin, relative to the job's root, by which the savepoint `savepoint` (its
/// folder name) keeps `checkpoint`.
fn pin_path(savepoint: &str, checkpoint: &SnapshotId) -> String {
    format!("{PINS_DIR}/{savepoint}/{}", checkpoint_dir_name(checkpoint))
}

/// `path` relative to `root`, as a manifest records it.
fn relative_path(root: &Path, path: &Path) -> String {
    match path.prefix_match(root) {
        Some(parts) => parts
            .map(|part| part.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join("/"),
        None => path.to_string(),
    }
}

/// Reads the manifest of the checkpoint or savepoint in `location`.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    location: &SnapshotLocation,
) -> Result<Manifest, StorageError> {
    let path = location.dir.clone().join(MANIFEST_FILE);
    let bytes = get_bytes(store, &path).await?;
    parse_manifest(&bytes, path.as_ref())
}

/// A manifest from its JSON text; `path` names it in errors. The format version is
/// read first, so a newer manifest is refused as such, whatever its shape.
pub fn parse_manifest(json: &[u8], path: &str) -> Result<Manifest, StorageError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        #[serde(default)]
        format_version: Option<u32>,
    }
    let unreadable = |source| StorageError::Manifest {
        path: path.to_owned(),
        source,
    };
    let version = serde_json::from_slice::<Version>(json)
        .map_err(unreadable)?
        .format_version
        .unwrap_or(1);
    if version > BORROWED_MANIFEST_FORMAT_VERSION {
        return Err(StorageError::NewerFormat {
            path: path.to_owned(),
            version,
        });
    }
    serde_json::from_slice(json).map_err(unreadable)
}

/// Refuses to restore the state of `manifest` (stored at `path`) when it is
/// encoded in a format newer than this runtime reads. Checked where state is
/// restored only: commits, recovery and garbage collection read the manifests of
/// any state format.
pub fn check_state_format(manifest: &Manifest, path: &str) -> Result<(), StorageError> {
    if manifest.state_format > STATE_FORMAT {
        return Err(StorageError::NewerStateFormat {
            path: path.to_owned(),
            state_format: manifest.state_format,
        });
    }
    Ok(())
}

/// The content of `relative` (a path under `base`) in `store`; `None` if there is
/// no such object.
pub async fn read_object_at(
    store: &Arc<dyn ObjectStore>,
    base: &Path,
    relative: &str,
) -> Result<Option<Bytes>, StorageError> {
    let path = relative
        .split('/')
        .filter(|part| !part.is_empty())
        .fold(base.clone(), |path, part| path.join(part));
    match get_bytes(store, &path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(StorageError::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => Ok(None),
        Err(error) => Err(error),
    }
}

async fn get_bytes(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Bytes, StorageError> {
    let result = store.get(path).await.map_err(store_error("read", path))?;
    result.bytes().await.map_err(store_error("read", path))
}

/// Downloads `files` (resolved against `base`) into the local folder `into`, under
/// their RocksDB names.
pub async fn download_files(
    store: &Arc<dyn ObjectStore>,
    base: &Path,
    files: &[SnapshotFile],
    into: &LocalPath,
) -> Result<(), StorageError> {
    tokio::fs::create_dir_all(into)
        .await
        .map_err(io_error("create", into))?;
    futures::stream::iter(files.iter().map(|file| async move {
        let path = file
            .path
            .split('/')
            .fold(base.clone(), |path, part| path.join(part));
        download_file(store, &path, &into.join(&file.name)).await
    }))
    .buffer_unordered(CONCURRENT_TRANSFERS)
    .try_collect::<()>()
    .await
}

/// Writes the object at `path` to the local file `local`: a local file copied
/// whole, a remote object written as its parts arrive.
async fn download_file(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    local: &LocalPath,
) -> Result<(), StorageError> {
    use tokio::io::AsyncWriteExt;
    let result = store.get(path).await.map_err(store_error("read", path))?;
    let mut parts = match result.payload {
        object_store::GetResultPayload::File(_, source) => {
            tokio::fs::copy(&source, local)
                .await
                .map_err(io_error("copy", local))?;
            return Ok(());
        }
        object_store::GetResultPayload::Stream(parts) => parts,
    };
    let file = tokio::fs::File::create(local)
        .await
        .map_err(io_error("create", local))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    while let Some(part) = parts.try_next().await.map_err(store_error("read", path))? {
        out.write_all(&part)
            .await
            .map_err(io_error("write", local))?;
    }
    out.flush().await.map_err(io_error("write", local))
}

/// Resolves a user-given snapshot path (a local folder or a URL, of a savepoint or
/// of a retained checkpoint) to its store and location.
pub fn locate_snapshot(
    path: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, SnapshotLocation), StorageError> {
    let url = if path.contains("://") {
        path.trim_end_matches('/').to_owned()
    } else {
        let absolute =
            std::path::absolute(path).map_err(io_error("resolve", LocalPath::new(path)))?;
        format!("file://{}", absolute.display())
    };
    let (store, dir) = open_store(&url, options)?;
    let is_checkpoint = dir
        .filename()
        .is_some_and(|name| parse_checkpoint_dir_name(name).is_some());
    let base = if is_checkpoint {
        let parts: Vec<_> = dir.parts().collect();
        Path::from_iter(parts[..parts.len() - 1].iter().cloned())
    } else {
        dir.clone()
    };
    Ok((store, SnapshotLocation { dir, base }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_savepoint_resolves_against_its_jobs_root_and_only_there() {
        let newer = br#"{"formatVersion": 3, "kind": "savepoint", "job": "j", "epoch": 7,
            "parallelism": 1, "maxParallelism": 128, "completedAtMs": 0, "operators": {},
            "borrowed": true}"#;
        let borrowed = parse_manifest(newer, "p").unwrap();
        assert!(borrowed.borrowed);
        let at = |dir: &str| SnapshotLocation {
            dir: Path::from(dir),
            base: Path::from(dir),
        };
        let resolved = at("b/jobs/clicks/savepoints/sp-7")
            .resolved_for(&borrowed)
            .unwrap();
        assert_eq!(resolved.base, Path::from("b/jobs/clicks"));
        assert_eq!(resolved.dir, Path::from("b/jobs/clicks/savepoints/sp-7"));
        // Moved out of its job's savepoints/, its files cannot be found.
        let error = at("b/kept/sp-7").resolved_for(&borrowed).unwrap_err();
        assert!(matches!(error, StorageError::BorrowedElsewhere { .. }));
        assert!(error.to_string().contains("savepoints/ folder"), "{error}");
        // A self-contained one resolves against its own folder.
        let plain = Manifest {
            borrowed: false,
            ..borrowed
        };
        let own = at("b/kept/sp-7").resolved_for(&plain).unwrap();
        assert_eq!(own.base, Path::from("b/kept/sp-7"));
    }

    #[test]
    fn a_manifest_of_a_newer_format_is_refused_as_such() {
        let newer = br#"{"formatVersion": 4, "somethingNew": {"shape": "unknown"}}"#;
        let error = parse_manifest(newer, "s3://b/job/chk-1/_manifest").unwrap_err();
        assert!(matches!(
            error,
            StorageError::NewerFormat { version: 4, .. }
        ));
        assert!(error.to_string().contains("newer Strom"), "{error}");
        assert!(matches!(
            parse_manifest(b"{}", "p"),
            Err(StorageError::Manifest { .. })
        ));
    }
}
