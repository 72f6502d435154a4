//! `file` destination: NDJSON in bizon's row layout, exactly-once across kill -9. With `unnest`
//! each line is the record's row as the normalization stage made it (`crate::normalize`): the
//! `record_schemas` columns, typed, in schema order — bizon's unnested file layout.
//!
//! The file itself is the buffer: rows are serialized straight into a write buffer and handed
//! to the OS in large sequential writes; `flush` fsyncs and returns the byte offset, which the
//! engine stores in the destination cursor. A resumed job truncates the file back to that
//! offset before writing, so bytes past the last commit (a partial tail) are discarded and
//! nothing is written twice.
//!
//! - `full_refresh`: rows go to a staging file (`<id>_temp.json`, as bizon names it);
//!   `finalize` fsyncs it and renames it over the target: readers see the previous complete
//!   file or the new complete one, never a partial one.
//! - `incremental` / `stream`: rows are appended to the target; the offset at job start is the
//!   first commit, so a crash before any flush rolls back to it.
//! - Broker lanes (several consumers): lane `k` writes `<stem>.lane-<k>.json` the same way; the
//!   job's rows are the union of the lane files.
//!
//! **Fencing.** A run paused past its backend lease (SIGSTOP, a frozen VM) is taken over by a
//! new run, and its backend commits are refused from then on; its file writes must be too, but a
//! file has no fencing token and the paused run's writer thread may hold chunks it writes the
//! moment it wakes up. So the file being written is locked (an OS lock on its inode, held while
//! it is open); a new run that finds it locked knows the holder is a live writer it took over,
//! and moves the path to a **new inode** holding a copy of the committed bytes (the part the
//! stale run could not change: it writes past its last commit only). Whatever the stale run
//! writes later lands in the old, unlinked inode: not one byte reaches the file. Each flush also
//! checks that the path still names the inode written, so a run whose file was moved away this
//! way fails instead of committing rows that are not in it.
//!
//! The remaining window: the engine checks the fencing token just before `open` and before
//! `finalize`, and both act by path (open truncates the file to the run's last commit, finalize
//! renames the staging file over the target). A run paused exactly between that check and the
//! call, and woken after a takeover, still acts on the new run's file: while the new run writes
//! it, the stale open finds it locked and moves it to a copy cut at the stale commit (the new
//! run's next flush fails, nothing false is committed, but the target may need `--reset`); after
//! the new run finished, an incremental target is truncated to the stale commit and loses the
//! new run's rows. That window is a few system calls wide; closing it would need the destination
//! to check the token itself (the Destination API does not pass it).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bizon_core::config::yaml::struct_fields;
use bizon_core::config::{StreamConfig, SyncMode};
use bizon_core::{
    BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Guarantee, Json, RecordBatch, Result,
};
use serde::Deserialize;
use serde_json::json;

use crate::descriptor::{parse_destination, DestinationCapabilities, DestinationDescriptor, DestinationSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Newline-delimited JSON, one row per line.
    #[default]
    Json,
    /// A directory of Parquet part files, one per flush (the `parquet` cargo feature).
    Parquet,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub format: FileFormat,
    /// Output path; default `<destination_id>.json` like bizon (destination_id defaults to the
    /// stream name). With `format: parquet` a directory of part files, default
    /// `<destination_id>.parquet`.
    #[serde(default)]
    pub path: Option<String>,
}

/// The `file` destination in the registry.
pub const DESCRIPTOR: DestinationDescriptor = DestinationDescriptor {
    name: "file",
    description: "NDJSON file in bizon's row layout or, with unnest, typed rows (byte offset in the cursor, truncate on resume), or Parquet parts",
    capabilities: DestinationCapabilities {
        guarantee: Guarantee::ExactlyOnce,
        transactional: false,
        typed_columns: false,
        lanes: true,
        dead_letters: false,
        network: false,
    },
    keys: struct_fields::<FileConfig>,
    schema: <FileConfig as schemars::JsonSchema>::json_schema,
    parse: parse_destination::<FileConfig>,
};

impl DestinationSpec for FileConfig {
    fn build(&self, destination_id: &str, typed: Option<Vec<(String, String)>>) -> Box<dyn Destination> {
        match self.format {
            #[cfg(feature = "parquet")]
            FileFormat::Parquet => Box::new(parquet::ParquetFiles::new(PathBuf::from(
                self.path.clone().unwrap_or_else(|| format!("{destination_id}.parquet")),
            ))),
            // Refused by `validate` when the feature is off.
            _ => Box::new(FileDestination::new(self, destination_id).with_unnested_rows(typed.is_some())),
        }
    }

    fn validate(
        &self,
        node: &bizon_core::config::yaml::Node,
    ) -> std::result::Result<(), bizon_core::config::yaml::Error> {
        if self.format == FileFormat::Parquet && !cfg!(feature = "parquet") {
            return Err(bizon_core::config::yaml::Error::new(
                String::from(
                    "format: parquet needs the `parquet` cargo feature, which this build was compiled without",
                ),
                node.get("format").unwrap_or(node).mark,
                "destination.config.format",
            ));
        }
        Ok(())
    }

    fn check(&self, destination_id: &str) -> bizon_core::Result<String> {
        let default = match self.format {
            FileFormat::Parquet => format!("{destination_id}.parquet"),
            FileFormat::Json => format!("{destination_id}.json"),
        };
        crate::check::writable_target(Path::new(self.path.as_deref().unwrap_or(&default)))
    }

    /// A `streams:` entry writes its own file: its `destination.path`, else `<name>.json`.
    fn build_stream(
        &self,
        name: &str,
        stream: &StreamConfig,
        typed: Option<Vec<(String, String)>>,
    ) -> Box<dyn Destination> {
        let path = stream.destination.get("path").and_then(Json::as_str).map(str::to_owned);
        Box::new(FileDestination::new(&FileConfig { path, ..self.clone() }, name).with_unnested_rows(typed.is_some()))
    }
}

/// Bytes serialized before they are handed to the OS in one write: small enough that the
/// buffer is still in L2 cache when the kernel copies it (1 MB chunks measured 2-4x slower).
const WRITE_CHUNK: usize = 256 << 10;
/// Writeback window: every this many bytes, writeback of the window just written is started
/// and the window before it is waited for and dropped from the page cache. Dirty memory stays
/// bounded (no writeback storm at the final fsync, no dirty-page throttling) and page-cache pages
/// are recycled instead of growing the cache by the whole file.
const WRITEBACK_WINDOW: u64 = 8 << 20;

pub struct FileDestination {
    /// The configured path; with lanes each lane writes `<stem>.lane-<k>.json` next to it.
    base: PathBuf,
    target: PathBuf,
    mode: SyncMode,
    /// The background writer owning the open file.
    io: Option<IoThread>,
    buf: Vec<u8>,
    /// Bytes in the file plus bytes in `buf`: the offset the next flush will commit.
    offset: u64,
    /// Resumed after the staging file was already renamed into place.
    published: bool,
    /// (device, inode) of the file being written: a flush checks the path still names it.
    written: Option<(u64, u64)>,
    /// `unnest`: each line is the record's payload (the normalized row), not bizon's layout.
    unnested: bool,
}

impl FileDestination {
    pub fn new(config: &FileConfig, destination_id: &str) -> Self {
        let target = match &config.path {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(format!("{destination_id}.json")),
        };
        FileDestination {
            base: target.clone(),
            target,
            mode: SyncMode::FullRefresh,
            io: None,
            buf: Vec::new(),
            offset: 0,
            published: false,
            written: None,
            unnested: false,
        }
    }

    /// Write each record's payload as its line (`unnest`: the normalization stage's rows).
    pub fn with_unnested_rows(mut self, on: bool) -> Self {
        self.unnested = on;
        self
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Where a full refresh stages its rows: `<stem>_temp.json` next to the target (bizon's name).
    pub fn staging_path(&self) -> PathBuf {
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let staged = match name.strip_suffix(".json") {
            Some(stem) => format!("{stem}_temp.json"),
            None => format!("{name}.tmp"),
        };
        self.target.with_file_name(staged)
    }

    fn write_path(&self) -> PathBuf {
        match self.mode {
            SyncMode::FullRefresh => self.staging_path(),
            _ => self.target.clone(),
        }
    }

    /// Hand the filled buffer to the writer thread and continue with a recycled one.
    fn spill(&mut self) -> Result<()> {
        let Some(io) = self.io.as_mut() else { return Ok(()) };
        let next = io.free.try_recv().unwrap_or_else(|_| Vec::with_capacity(WRITE_CHUNK + (WRITE_CHUNK >> 2)));
        let full = std::mem::replace(&mut self.buf, next);
        if io.tx.send(Cmd::Write(full)).is_err() {
            return Err(self.io_failure());
        }
        Ok(())
    }

    /// Hand over the pending buffer and fsync; the token is the durable byte offset.
    fn flush_file(&mut self) -> Result<Json> {
        if !self.published {
            if !self.buf.is_empty() {
                self.spill()?;
            }
            if let Some(io) = self.io.as_ref() {
                if let Err(e) = io.sync() {
                    self.io = None;
                    return Err(Error::permanent(format!("writing {}: {e}", self.target.display())));
                }
            }
            self.check_still_ours()?;
        }
        Ok(json!({"offset": self.offset}))
    }

    /// Fail if the path no longer names the file this destination writes: a run that took the
    /// pipeline over moved it to a copy of its committed part ([`claim`]), so nothing written
    /// since the last commit is in it and committing it would be a lie.
    fn check_still_ours(&mut self) -> Result<()> {
        let Some(ours) = self.written else { return Ok(()) };
        let path = self.write_path();
        let now = fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if now == Some(ours) {
            return Ok(());
        }
        self.io = None;
        Err(Error::permanent(format!(
            "{} was replaced since this run opened it (another run took the pipeline over, or another pipeline \
             writes the same file): what this run wrote since its last commit is not in it",
            path.display()
        )))
    }

    /// The writer thread stopped: take its error.
    fn io_failure(&mut self) -> Error {
        let err = self.io.take().and_then(IoThread::join).unwrap_or_else(|| "the writer thread stopped".into());
        Error::permanent(format!("writing {}: {err}", self.target.display()))
    }
}

/// The writer thread's error is its text (`String`): it crosses the thread once, is cloned to
/// every later fsync request, and has one meaning, turned into a `Permanent` error naming the
/// file by [`FileDestination::io_failure`]; `std::io::Error` is not `Clone`.
enum Cmd {
    Write(Vec<u8>),
    /// Write everything sent so far, fsync, reply.
    Sync(mpsc::Sender<std::result::Result<(), String>>),
}

/// A thread that owns the file and does the write syscalls (the kernel's copy into the page
/// cache is a third of the work) while the consumer serializes the next chunk.
struct IoThread {
    tx: mpsc::SyncSender<Cmd>,
    free: mpsc::Receiver<Vec<u8>>,
    handle: Option<std::thread::JoinHandle<std::result::Result<(), String>>>,
}

impl IoThread {
    fn start(file: File, start: u64) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Cmd>(4);
        let (free_tx, free) = mpsc::channel();
        let handle = std::thread::Builder::new().name("bizon-file-io".into()).spawn(move || {
            let mut file = file;
            let mut failed: Option<String> = None;
            let (mut written, mut writeback_to, mut inflight_from) = (start, start, start);
            for cmd in rx {
                match cmd {
                    Cmd::Write(mut buf) => {
                        if failed.is_none() {
                            match file.write_all(&buf) {
                                Ok(()) => {
                                    written += buf.len() as u64;
                                    if written - writeback_to >= WRITEBACK_WINDOW {
                                        writeback(&file, inflight_from, writeback_to, written);
                                        inflight_from = writeback_to;
                                        writeback_to = written;
                                    }
                                }
                                Err(e) => failed = Some(e.to_string()),
                            }
                        }
                        buf.clear();
                        let _ = free_tx.send(buf);
                    }
                    Cmd::Sync(reply) => {
                        let r = match &failed {
                            Some(e) => Err(e.clone()),
                            None => file.sync_data().map_err(|e| format!("fsync: {e}")),
                        };
                        let _ = reply.send(r);
                    }
                }
            }
            failed.map_or(Ok(()), Err)
        })?;
        Ok(IoThread { tx, free, handle: Some(handle) })
    }

    /// Send everything, fsync, wait.
    fn sync(&self) -> std::result::Result<(), String> {
        let (reply, answer) = mpsc::channel();
        self.tx.send(Cmd::Sync(reply)).map_err(|_| "the writer thread stopped".to_string())?;
        answer.recv().map_err(|_| "the writer thread stopped".to_string())?
    }

    /// Stop the thread after its pending writes; its error, if any.
    fn join(mut self) -> Option<String> {
        self.stop()
    }

    fn stop(&mut self) -> Option<String> {
        let (dead, _) = mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.tx, dead));
        match self.handle.take()?.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("the writer thread panicked".into()),
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        // Never leave a writer behind: a new instance may truncate the same file next.
        self.stop();
    }
}

/// Take the OS lock on `file`, just opened at `path`, for as long as it stays open. When a live
/// writer holds it — a run this one took over, paused or partitioned — its descriptor cannot be
/// revoked, so `path` moves to a new, locked inode holding the first `keep` bytes of the file
/// (the committed part, which that writer never changes) and its later writes go to the old,
/// unlinked inode. A file system without these locks only gets a warning.
fn claim(path: &Path, file: File, keep: u64) -> Result<File> {
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot lock the file: a paused run taken over could still write to it");
            return Ok(file);
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fresh_path = path.with_file_name(format!(".{name}.bizon-takeover"));
    let io = |what: &str| {
        let what = format!("{what} {}", fresh_path.display());
        move |e| Error::io(what, e)
    };
    let mut fresh = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&fresh_path)
        .map_err(io("creating"))?;
    fresh.try_lock().map_err(|e| Error::permanent(format!("locking {}: {e}", fresh_path.display())))?;
    if let Ok(m) = file.metadata() {
        let _ = fs::set_permissions(&fresh_path, m.permissions()); // best effort: keep the user's mode
    }
    let copied = std::io::copy(&mut (&file).take(keep), &mut fresh).map_err(io("copying the committed part into"))?;
    if copied != keep {
        return Err(Error::permanent(format!(
            "{}: {keep} bytes are committed but only {copied} could be read",
            path.display()
        )));
    }
    fresh.sync_data().map_err(io("syncing"))?;
    fs::rename(&fresh_path, path).map_err(io("renaming into place"))?;
    sync_dir(path);
    tracing::warn!(
        path = %path.display(), committed_bytes = keep,
        "the file is still open in another writer (a run this one took over): writing on in a copy of its committed part, out of that writer's reach"
    );
    Ok(fresh)
}

/// Start writeback of `[started, written)`, then wait for `[inflight, started)` (started one
/// window ago) and drop it from the page cache. Advisory: errors surface at the next fsync.
#[cfg(target_os = "linux")]
fn writeback(f: &File, inflight: u64, started: u64, written: u64) {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: plain syscalls on an open descriptor with in-range offsets; no memory is shared.
    unsafe {
        libc::sync_file_range(fd, started as i64, (written - started) as i64, libc::SYNC_FILE_RANGE_WRITE);
        if started > inflight {
            let len = (started - inflight) as i64;
            libc::sync_file_range(
                fd,
                inflight as i64,
                len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            libc::posix_fadvise(fd, inflight as i64, len, libc::POSIX_FADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn writeback(_f: &File, _inflight: u64, _started: u64, _written: u64) {}

fn sync_dir(path: &Path) {
    // Persist the rename itself; best effort on filesystems that refuse to fsync a directory.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Destination for FileDestination {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        // Stop a writer from an earlier attempt before touching the file.
        self.io = None;
        self.mode = ctx.sync_mode;
        self.published = false;
        self.written = None;
        self.target = match ctx.lane {
            Some((lane, lanes)) if lanes > 1 => {
                let name = self.base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let stem = name.strip_suffix(".json").unwrap_or(&name);
                self.base.with_file_name(format!("{stem}.lane-{lane}.json"))
            }
            _ => self.base.clone(),
        };
        self.buf = Vec::with_capacity(WRITE_CHUNK + (WRITE_CHUNK >> 2));
        let path = self.write_path();
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))?;
        }
        let committed = match resume {
            Some(token) => Some(
                token
                    .get("offset")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| Error::internal(format!("file destination: bad commit token {token}")))?,
            ),
            None => None,
        };
        if let (Some(offset), SyncMode::FullRefresh) = (committed, self.mode) {
            if !path.exists() {
                let target_len = fs::metadata(&self.target).map(|m| m.len()).ok();
                if target_len == Some(offset) {
                    // A crash hit between the rename and the job's completion: already published.
                    self.published = true;
                    self.offset = offset;
                    return Ok(json!({"offset": offset}));
                }
                if offset > 0 {
                    return Err(Error::permanent(format!(
                        "staging file {} is missing but {offset} bytes were committed to it; \
                         run with --reset (or force_ignore_checkpoint) to start over",
                        path.display()
                    )));
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file.metadata().map_err(|e| Error::io(path.display(), e))?.len();
        let start = match (committed, self.mode) {
            (Some(offset), _) => {
                if len < offset {
                    return Err(Error::permanent(format!(
                        "{} holds {len} bytes but {offset} were committed: the file was truncated outside bizon",
                        path.display()
                    )));
                }
                offset
            }
            (None, SyncMode::FullRefresh) => 0,
            (None, _) => len,
        };
        let file = claim(&path, file, start)?;
        let meta = file.metadata().map_err(|e| Error::io(path.display(), e))?;
        let len = meta.len();
        self.written = Some((meta.dev(), meta.ino()));
        if len != start {
            // Drop the uncommitted tail of a crashed run (or the old staging content).
            file.set_len(start).map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
            file.sync_data().map_err(|e| Error::io(path.display(), e))?;
        }
        let mut file = file;
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path.display(), e))?;
        self.io = Some(IoThread::start(file, start).map_err(|e| Error::io("starting the file writer thread", e))?);
        self.offset = start;
        Ok(json!({"offset": start}))
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if self.published {
            return Err(Error::internal("file destination: write after the result was published"));
        }
        // Serialize in slices so the buffer handed to the kernel stays around WRITE_CHUNK.
        let per_record = (batch.byte_len() / batch.len().max(1)).max(1) * 2 + 200;
        let step = (WRITE_CHUNK / per_record).max(1);
        let mut from = 0;
        while from < batch.len() {
            let to = (from + step).min(batch.len());
            let before = self.buf.len();
            if self.unnested {
                for r in (from..to).map(|i| batch.get(i)) {
                    let at = self.buf.len();
                    self.buf.extend_from_slice(r.data);
                    // a value kept as written may span lines; in JSON a raw line break is only
                    // ever whitespace between tokens, so a space keeps the row one line
                    for b in &mut self.buf[at..] {
                        if *b == b'\n' || *b == b'\r' {
                            *b = b' ';
                        }
                    }
                    self.buf.push(b'\n');
                }
            } else {
                super::write_rows(&mut self.buf, batch, from..to, meta);
            }
            self.offset += (self.buf.len() - before) as u64;
            if self.buf.len() >= WRITE_CHUNK {
                self.spill()?;
            }
            from = to;
        }
        Ok(())
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        self.flush_file()
    }

    fn finalize(&mut self) -> Result<()> {
        if self.published {
            return Ok(());
        }
        self.flush_file()?;
        if let Some(err) = self.io.take().and_then(IoThread::join) {
            return Err(Error::permanent(format!("writing {}: {err}", self.target.display())));
        }
        if self.mode == SyncMode::FullRefresh {
            let staging = self.staging_path();
            fs::rename(&staging, &self.target)
                .map_err(|e| Error::io(format!("renaming {} to {}", staging.display(), self.target.display()), e))?;
            sync_dir(&self.target);
        }
        self.published = true;
        Ok(())
    }
}

#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(test)]
mod tests;
