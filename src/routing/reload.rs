//! Hot reload of routes.toml: watch → debounce → `routing::load_table` (validate, then build
//! with `RouteTable::rebuild`) → `ArcSwap::store`.
//!
//! The watcher observes the file's *directory*, not the file, so every way of saving works:
//! in-place writes, editors that write a temporary file and rename it over, delete-then-create,
//! and Kubernetes ConfigMap symlink swaps (`..data`). Only events naming the file itself or,
//! when it is a symlink, its target (the first hop inside the directory, e.g. `..data`, and the
//! final file, watched in its own directory) trigger a re-read: a log file kept beside the
//! config must not loop reloads. The file's SHA-256 decides whether anything changed. SIGHUP
//! forces a reload, which also picks up changed `${ENV}` values.
//!
//! Building the new table may fail; storing it cannot. A failed reload keeps the last good table
//! and is reported in the log (`file:line:col: message`) and in `/health`. Requests in flight
//! keep the table they started with (they hold an `Arc` of it), and with it its clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::RouteTable;
use crate::config;
use crate::observe::Metrics;

/// How long the directory must stay quiet before a reload (editors save in several steps).
const QUIET: Duration = Duration::from_millis(50);
/// A reload happens at the latest this long after the first event, however busy the directory.
const MAX_DELAY: Duration = Duration::from_millis(400);

/// The version of the file in force and how reloads have gone; shown by `/health`.
#[derive(Debug)]
pub struct ReloadStatus {
    path: PathBuf,
    loaded: ArcSwap<Loaded>,
    last_error: ArcSwapOption<Failure>,
    /// Reloads that swapped in a new table.
    pub succeeded: AtomicU64,
    /// Reloads refused (the last good table kept serving).
    pub failed: AtomicU64,
    /// Events after which the file turned out unchanged.
    pub unchanged: AtomicU64,
    /// `config::fixed_at_start` of the file the gateway started with: a reload cannot change
    /// those settings, and says so when they differ.
    pub fixed_at_start: String,
}

/// The file version in force.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// SHA-256 of the file's text, hex.
    pub sha256: String,
    /// When it was loaded (Unix seconds).
    pub at: u64,
}

/// The last refused reload.
#[derive(Debug, Clone)]
pub struct Failure {
    /// SHA-256 of the refused text, when the file could be read.
    pub sha256: Option<String>,
    /// When (Unix seconds).
    pub at: u64,
    /// Every fault, `file:line:col: message`.
    pub errors: Vec<String>,
}

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new table is serving.
    Swapped,
    /// The file has not changed since the last attempt.
    Unchanged,
    /// The file was refused; the old table keeps serving.
    Refused,
}

impl ReloadStatus {
    /// Status for a table just loaded from `path` with text `source`.
    pub fn new(path: &Path, source: &str) -> Self {
        ReloadStatus {
            path: path.to_owned(),
            loaded: ArcSwap::from_pointee(Loaded {
                sha256: sha256_hex(source),
                at: unix_now(),
            }),
            last_error: ArcSwapOption::empty(),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            fixed_at_start: String::new(),
        }
    }

    /// The config file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version in force.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.loaded.load_full()
    }

    /// The last refused reload, cleared once the file is good again.
    pub fn last_error(&self) -> Option<Arc<Failure>> {
        self.last_error.load_full()
    }
}

/// What a reload swaps and reports to: the table in force and the reload status, shared with the
/// server's state. Cheap to clone.
#[derive(Clone)]
pub struct Reloadable {
    /// The table that handlers snapshot; a reload stores a new one.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Which file version is in force and how reloads went.
    pub status: Arc<ReloadStatus>,
    /// Counts reloads, when `[metrics]` is on.
    pub metrics: Option<Arc<Metrics>>,
}

/// Reloads the file now. Without `force`, a file whose text was already loaded (or already
/// refused) is left alone.
pub fn reload(target: &Reloadable, force: bool) -> ReloadOutcome {
    let outcome = reload_file(target, force);
    if let Some(metrics) = &target.metrics {
        match outcome {
            ReloadOutcome::Swapped => metrics.reload(true),
            ReloadOutcome::Refused => metrics.reload(false),
            ReloadOutcome::Unchanged => {}
        }
    }
    outcome
}

fn reload_file(target: &Reloadable, force: bool) -> ReloadOutcome {
    let status = &target.status;
    let source = match config::read(status.path()) {
        Ok(source) => source,
        Err(errors) => return refuse(status, None, &errors),
    };
    let sha256 = sha256_hex(&source);
    if !force {
        if sha256 == status.loaded().sha256 {
            // Back to the version in force (e.g. a broken edit undone): nothing is wrong now.
            status.last_error.store(None);
            status.unchanged.fetch_add(1, Ordering::Relaxed);
            return ReloadOutcome::Unchanged;
        }
        if status.last_error().and_then(|f| f.sha256.clone()).as_ref() == Some(&sha256) {
            status.unchanged.fetch_add(1, Ordering::Relaxed);
            return ReloadOutcome::Unchanged;
        }
    }
    let previous = target.routes.load();
    let built = super::load_table(&source, status.path(), Some(&previous)).map(|(config, table)| {
        if config::fixed_at_start(&config) != status.fixed_at_start {
            tracing::warn!(file = %status.path().display(), "[store], [auth], [metrics], [server] tls or [server.cors] changed: they are read at start, so restart to apply them; routes and backends are reloaded");
        }
        table
    });
    match built {
        Ok(table) => {
            let routes = table.routes().len();
            target.routes.store(Arc::new(table));
            status.loaded.store(Arc::new(Loaded {
                sha256: sha256.clone(),
                at: unix_now(),
            }));
            status.last_error.store(None);
            status.succeeded.fetch_add(1, Ordering::Relaxed);
            tracing::info!(file = %status.path().display(), %sha256, routes, "routes reloaded");
            ReloadOutcome::Swapped
        }
        Err(errors) => refuse(status, Some(sha256), &errors),
    }
}

fn refuse(
    status: &ReloadStatus,
    sha256: Option<String>,
    errors: &config::ConfigErrors,
) -> ReloadOutcome {
    let messages: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    for message in messages.iter().take(10) {
        tracing::error!("{message}");
    }
    tracing::error!(
        file = %status.path().display(),
        errors = messages.len(),
        "reload refused; the last good route table keeps serving"
    );
    status.last_error.store(Some(Arc::new(Failure {
        sha256,
        at: unix_now(),
        errors: messages,
    })));
    status.failed.fetch_add(1, Ordering::Relaxed);
    ReloadOutcome::Refused
}

/// The paths whose events concern the config file: the file's own name in its directory,
/// and, when it is a symlink, the first hop of its target inside that directory (`..data` of a
/// Kubernetes ConfigMap) and the file it finally resolves to.
#[derive(Debug)]
struct ConfigPaths {
    /// Directories to watch (the file's, and its resolved target's when elsewhere).
    dirs: Vec<PathBuf>,
    /// Full paths an event must name to trigger a reload.
    relevant: Vec<PathBuf>,
}

impl ConfigPaths {
    fn of(path: &Path) -> Self {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        let mut relevant = vec![dir.join(&name)];
        let mut dirs = vec![dir.clone()];
        if let Ok(target) = std::fs::read_link(path) {
            if let Some(std::path::Component::Normal(first)) = target.components().next() {
                relevant.push(dir.join(first));
            }
            if let Ok(resolved) = std::fs::canonicalize(path)
                && let Some(target_dir) = resolved.parent()
            {
                relevant.push(resolved.clone());
                dirs.push(target_dir.to_owned());
            }
        }
        // Events name paths as the watch was given them; compare canonical directories too.
        for dir in dirs.clone() {
            if let Ok(canonical) = std::fs::canonicalize(&dir)
                && canonical != dir
            {
                relevant.push(canonical.join(&name));
            }
        }
        dirs.dedup();
        ConfigPaths { dirs, relevant }
    }

    /// Whether a file-system event may have changed the config.
    fn concerns(&self, event: &notify::Event) -> bool {
        !matches!(event.kind, EventKind::Access(_))
            && event.paths.iter().any(|p| self.relevant.contains(p))
    }
}

/// Starts watching the config's directory and SIGHUP, reloading on either, until the runtime
/// stops. The watch is in place when this returns, so no later edit is missed, and an edit made
/// since the file was loaded is picked up too. Must be called within a tokio runtime.
pub fn spawn_watcher(target: Reloadable) {
    let paths = ConfigPaths::of(target.status.path());
    let dirs = paths.dirs.clone();
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let dir = shown.join(", ");
    // Capacity 1 with try_send: one pending "look again" is as good as many.
    let (tx, rx) = mpsc::channel::<()>(1);
    let look_again = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && paths.concerns(&event)
        {
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| {
        for dir in &dirs {
            w.watch(dir, RecursiveMode::NonRecursive)?;
        }
        Ok(w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(err) => {
            tracing::error!(%dir, error = %err, "cannot watch the config directory; reload with SIGHUP only");
            None
        }
    };
    // An edit made after the file was first read but before the watch was in place made no
    // event: look once now, as if one had come (a loaded machine can stretch that window).
    if changed_since_loaded(&target.status) {
        let _ = look_again.try_send(());
    }
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP");
            None
        }
    };
    tracing::info!(%dir, "watching routes file for changes");
    tokio::spawn(async move {
        // The watcher stops when dropped: the task owns it.
        let _watcher = _watcher;
        watch_loop(target, rx, hangup).await;
    });
}

async fn watch_loop(
    target: Reloadable,
    mut rx: mpsc::Receiver<()>,
    mut hangup: Option<tokio::signal::unix::Signal>,
) {
    loop {
        let force = tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    break;
                }
                settle(&mut rx).await;
                false
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading routes");
                true
            }
        };
        let target = target.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || reload(&target, force)).await {
            tracing::error!(error = %err, "reload task failed");
        }
    }
}

/// Whether the file's text now differs from the version in force (unreadable counts as
/// unchanged: an event follows when it comes back).
fn changed_since_loaded(status: &ReloadStatus) -> bool {
    config::read(status.path()).is_ok_and(|source| sha256_hex(&source) != status.loaded().sha256)
}

/// Waits until no event arrived for `QUIET`, or `MAX_DELAY` passed.
async fn settle(rx: &mut mpsc::Receiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    while let Ok(Some(())) =
        tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + QUIET), rx.recv()).await
    {
    }
}

/// Hex SHA-256 of a file's text.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_for(dir: &Path, text: &str) -> Reloadable {
        let path = dir.join("routes.toml");
        std::fs::write(&path, text).unwrap();
        let (_, table) = crate::routing::load_table(text, &path, None).unwrap();
        Reloadable {
            routes: Arc::new(ArcSwap::from_pointee(table)),
            status: Arc::new(ReloadStatus::new(&path, text)),
            metrics: None,
        }
    }

    const A: &str = "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"e\"\n";
    const B: &str = "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"b/\"\nbackend = \"e\"\n";

    #[test]
    fn a_valid_edit_swaps_an_invalid_one_is_refused_and_undoing_it_clears_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_for(dir.path(), A);
        let path = dir.path().join("routes.toml");

        assert_eq!(reload(&state, false), ReloadOutcome::Unchanged);
        std::fs::write(&path, B).unwrap();
        assert_eq!(reload(&state, false), ReloadOutcome::Swapped);
        assert!(state.routes.load().resolve("b/x").is_some());

        std::fs::write(&path, "[[routes]]\nprefix = \"c/\"\nbackend = \"nope\"\n").unwrap();
        assert_eq!(reload(&state, false), ReloadOutcome::Refused);
        assert!(
            state.routes.load().resolve("b/x").is_some(),
            "last good table serves"
        );
        let failure = state.status.last_error().unwrap();
        assert!(
            failure.errors[0].ends_with("routes.toml:3:11: unknown backend `nope` (defined: none)"),
            "{:?}",
            failure.errors
        );
        assert_eq!(
            reload(&state, false),
            ReloadOutcome::Unchanged,
            "the same broken text is not re-reported"
        );

        std::fs::write(&path, B).unwrap();
        assert_eq!(reload(&state, false), ReloadOutcome::Unchanged);
        assert!(state.status.last_error().is_none());
        assert_eq!(state.status.failed.load(Ordering::Relaxed), 1);
        assert_eq!(state.status.succeeded.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_missing_file_is_refused_and_forced_reloads_always_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_for(dir.path(), A);
        std::fs::remove_file(dir.path().join("routes.toml")).unwrap();
        assert_eq!(reload(&state, false), ReloadOutcome::Refused);
        assert!(state.routes.load().resolve("a/x").is_some());
        std::fs::write(dir.path().join("routes.toml"), A).unwrap();
        assert_eq!(reload(&state, true), ReloadOutcome::Swapped);
    }

    fn event(kind: EventKind, paths: &[PathBuf]) -> notify::Event {
        let mut event = notify::Event::new(kind);
        event.paths = paths.to_vec();
        event
    }

    #[test]
    fn only_events_naming_the_file_or_its_symlink_target_concern_it() {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("routes.toml"), A).unwrap();
        let paths = ConfigPaths::of(&d.join("routes.toml"));
        let write = EventKind::Modify(ModifyKind::Any);
        assert!(paths.concerns(&event(write, &[d.join("routes.toml")])));
        // Rename-over from an editor's temporary file names the file as the destination.
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(paths.concerns(&event(
            rename,
            &[d.join(".routes.toml.swp"), d.join("routes.toml")]
        )));
        // A log file kept beside the config, and reads of the config, do not.
        assert!(!paths.concerns(&event(write, &[d.join("gateway.log")])));
        let read = EventKind::Access(notify::event::AccessKind::Any);
        assert!(!paths.concerns(&event(read, &[d.join("routes.toml")])));

        // A Kubernetes ConfigMap: routes.toml -> ..data/routes.toml, ..data -> ..2026_1.
        let k8s = tempfile::tempdir().unwrap();
        let k = k8s.path();
        std::fs::create_dir(k.join("..2026_1")).unwrap();
        std::fs::write(k.join("..2026_1/routes.toml"), A).unwrap();
        std::os::unix::fs::symlink("..2026_1", k.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/routes.toml", k.join("routes.toml")).unwrap();
        let paths = ConfigPaths::of(&k.join("routes.toml"));
        let create = EventKind::Create(CreateKind::Any);
        assert!(paths.concerns(&event(rename, &[k.join("..data_tmp"), k.join("..data")])));
        assert!(!paths.concerns(&event(create, &[k.join("..2026_2")])));
        assert!(!paths.concerns(&event(write, &[k.join("app.log")])));

        // A symlink to a file in another directory: that directory is watched too, and only
        // the target file's events there count.
        let elsewhere = tempfile::tempdir().unwrap();
        let real = elsewhere.path().join("real.toml");
        std::fs::write(&real, A).unwrap();
        let link_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&real, link_dir.path().join("routes.toml")).unwrap();
        let paths = ConfigPaths::of(&link_dir.path().join("routes.toml"));
        let real = std::fs::canonicalize(&real).unwrap();
        assert!(paths.dirs.contains(&real.parent().unwrap().to_owned()));
        assert!(paths.concerns(&event(write, std::slice::from_ref(&real))));
        assert!(!paths.concerns(&event(write, &[real.with_file_name("other.log")])));
    }

    #[tokio::test]
    async fn an_edit_made_before_the_watch_was_in_place_is_picked_up() {
        // Arrange: the file loaded, then edited before anything watches it (the window between
        // reading it at start and the watch; a loaded machine stretches it).
        let dir = tempfile::tempdir().unwrap();
        let state = state_for(dir.path(), A);
        std::fs::write(dir.path().join("routes.toml"), B).unwrap();

        // Act: the watch starts, and no further event comes.
        spawn_watcher(state.clone());

        // Assert: the edit is in force (polled, bounded).
        for _ in 0..1000 {
            if state.status.succeeded.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(state.status.succeeded.load(Ordering::Relaxed), 1);
        assert!(state.routes.load().resolve("b/x").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn settle_waits_for_quiet_but_not_forever() {
        let (tx, mut rx) = mpsc::channel(1);
        // A burst that never goes quiet is cut off at MAX_DELAY.
        tokio::spawn(async move {
            loop {
                let _ = tx.try_send(());
                tokio::time::sleep(QUIET / 2).await;
            }
        });
        let started = tokio::time::Instant::now();
        settle(&mut rx).await;
        let waited = started.elapsed();
        assert!(
            waited >= MAX_DELAY && waited < MAX_DELAY + QUIET,
            "{waited:?}"
        );
    }
}
