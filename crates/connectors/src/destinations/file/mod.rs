//! `file` destination: NDJSON in bizon's row layout, exactly-once across kill -9.
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

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bizon_core::config::SyncMode;
use bizon_core::{BatchMeta, Destination, DestinationContext, Error, Json, RecordBatch, Result};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Newline-delimited JSON, one row per line.
    #[default]
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub format: FileFormat,
    /// Output path; default `<destination_id>.json` like bizon (destination_id defaults to the
    /// stream name).
    #[serde(default)]
    pub path: Option<String>,
}

/// Bytes serialized before they are handed to the OS in one write.
const WRITE_CHUNK: usize = 1 << 20;

pub struct FileDestination {
    target: PathBuf,
    mode: SyncMode,
    file: Option<File>,
    buf: Vec<u8>,
    /// Bytes in the file plus bytes in `buf`: the offset the next flush will commit.
    offset: u64,
    /// Resumed after the staging file was already renamed into place.
    published: bool,
}

impl FileDestination {
    pub fn new(config: &FileConfig, destination_id: &str) -> Self {
        let target = match &config.path {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(format!("{destination_id}.json")),
        };
        FileDestination {
            target,
            mode: SyncMode::FullRefresh,
            file: None,
            buf: Vec::new(),
            offset: 0,
            published: false,
        }
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

    fn spill(&mut self) -> Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(&self.buf).map_err(|e| Error::io(format!("writing {}", self.target.display()), e))?;
        }
        self.buf.clear();
        Ok(())
    }
}

fn sync_dir(path: &Path) {
    // Persist the rename itself; best effort on filesystems that refuse to fsync a directory.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Destination for FileDestination {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        self.mode = ctx.sync_mode;
        self.published = false;
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
        if len != start {
            // Drop the uncommitted tail of a crashed run (or the old staging content).
            file.set_len(start).map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
            file.sync_data().map_err(|e| Error::io(path.display(), e))?;
        }
        let mut file = file;
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path.display(), e))?;
        self.file = Some(file);
        self.offset = start;
        Ok(json!({"offset": start}))
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if self.published {
            return Err(Error::internal("file destination: write after the result was published"));
        }
        let before = self.buf.len();
        super::write_rows(&mut self.buf, batch, meta);
        self.offset += (self.buf.len() - before) as u64;
        if self.buf.len() >= WRITE_CHUNK {
            self.spill()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Json> {
        if !self.published {
            self.spill()?;
            if let Some(f) = self.file.as_ref() {
                f.sync_data().map_err(|e| Error::io(format!("fsync {}", self.target.display()), e))?;
            }
        }
        Ok(json!({"offset": self.offset}))
    }

    fn finalize(&mut self) -> Result<()> {
        if self.published {
            return Ok(());
        }
        self.flush()?;
        self.file = None;
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

#[cfg(test)]
mod tests;
