//! `file` with `format: parquet`: bizon's file rows (`source_record_id`, `source_timestamp`,
//! `source_data`, `bizon_extracted_at`, `bizon_loaded_at`, `bizon_id`; timestamps as µs UTC) in
//! Parquet files, exactly-once across kill -9.
//!
//! A Parquet file cannot be appended to (its footer closes it), so `path` names a directory of
//! part files, one per flush: `part-00000.parquet`, `part-00001.parquet`, … (DuckDB, pyarrow,
//! Spark and BigQuery read such a directory as one table). A part is written as
//! `.part-N.parquet.tmp`, fsynced and renamed into place before the flush returns; the commit
//! token is the number of the next part. A resumed job deletes the parts at or after its
//! committed number (and any `.tmp`), so nothing uncommitted survives and nothing is written
//! twice.
//!
//! - `full_refresh`: parts go to `<path>_temp/`; `finalize` moves the old directory aside,
//!   renames the staging directory into place and removes the old one (readers of a directory of
//!   parts may see it missing for the instant between the two renames).
//! - `incremental` / `stream`: parts are added to `<path>/`, numbered after the ones there.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bizon_core::config::SyncMode;
use bizon_core::{BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Result};
use serde_json::json;

use crate::parquet::{LayoutParquet, Naming, ROW_GROUP_ROWS};

/// Encoded bytes handed to the OS per write.
const WRITE_CHUNK: usize = 1 << 20;

/// The part being written and its temporary file.
struct Part {
    writer: LayoutParquet,
    file: File,
    tmp: PathBuf,
}

pub struct ParquetFiles {
    /// The directory of parts readers see.
    target: PathBuf,
    mode: SyncMode,
    /// Number of the next part to write.
    next: u64,
    part: Option<Part>,
    published: bool,
}

impl ParquetFiles {
    pub fn new(target: PathBuf) -> Self {
        ParquetFiles { target, mode: SyncMode::FullRefresh, next: 0, part: None, published: false }
    }

    /// Where a full refresh stages its parts: `<path>_temp` beside the target.
    pub fn staging_dir(&self) -> PathBuf {
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.target.with_file_name(format!("{name}_temp"))
    }

    fn write_dir(&self) -> PathBuf {
        match self.mode {
            SyncMode::FullRefresh => self.staging_dir(),
            _ => self.target.clone(),
        }
    }

    fn part_path(dir: &Path, n: u64) -> PathBuf {
        dir.join(format!("part-{n:05}.parquet"))
    }

    /// Part numbers in `dir`, and the temporary files there.
    fn scan(dir: &Path) -> Result<(Vec<u64>, Vec<PathBuf>)> {
        let mut parts = Vec::new();
        let mut tmp = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((parts, tmp)),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".parquet.tmp") {
                tmp.push(entry.path());
            } else if let Some(n) = name.strip_prefix("part-").and_then(|r| r.strip_suffix(".parquet")) {
                if let Ok(n) = n.parse() {
                    parts.push(n);
                }
            }
        }
        parts.sort_unstable();
        Ok((parts, tmp))
    }

    fn remove(path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Destination for ParquetFiles {
    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        if ctx.lane.is_some_and(|(_, lanes)| lanes > 1) {
            return Err(Error::config(
                "file destination: `format: parquet` does not run on lanes (one consumer per pipeline); use `format: json` with lanes",
            ));
        }
        self.mode = ctx.sync_mode;
        self.part = None;
        self.published = false;
        let dir = self.write_dir();
        let committed = match resume {
            Some(token) => Some(
                token
                    .get("next_part")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| Error::internal(format!("file destination (parquet): bad commit token {token}")))?,
            ),
            None => None,
        };
        if let (Some(n), SyncMode::FullRefresh) = (committed, self.mode) {
            if !dir.exists() && self.target.exists() {
                // A crash hit between the rename and the job's completion: already published.
                self.published = true;
                self.next = n;
                return Ok(json!({"next_part": n}));
            }
        }
        if committed.is_none() && self.mode == SyncMode::FullRefresh && dir.exists() {
            // A new job: whatever an abandoned one staged is not ours.
            fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))?;
        let (parts, tmp) = Self::scan(&dir)?;
        for t in &tmp {
            Self::remove(t)?;
        }
        self.next = match committed {
            Some(n) => {
                // Parts at or after the commit were written by the crashed run, not committed.
                for p in parts.iter().filter(|p| **p >= n) {
                    Self::remove(&Self::part_path(&dir, *p))?;
                }
                n
            }
            None => parts.last().map_or(0, |p| p + 1),
        };
        sync_dir(&dir);
        Ok(json!({"next_part": self.next}))
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        if self.published {
            return Err(Error::internal("file destination: write after the result was published"));
        }
        if batch.is_empty() {
            return Ok(());
        }
        if self.part.is_none() {
            let tmp = self.write_dir().join(format!(".part-{:05}.parquet.tmp", self.next));
            let file = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
            let writer = LayoutParquet::with_options(Naming::File, &[], ROW_GROUP_ROWS)?;
            self.part = Some(Part { writer, file, tmp });
        }
        let Some(part) = self.part.as_mut() else { return Ok(()) };
        part.writer.write(batch, meta, &[])?;
        let ready = part.writer.take(WRITE_CHUNK);
        if !ready.is_empty() {
            part.file.write_all(&ready).map_err(|e| Error::io(format!("writing {}", part.tmp.display()), e))?;
        }
        Ok(())
    }

    fn flush(&mut self, _next: &DestinationCursor) -> Result<Json> {
        if let Some(Part { writer, mut file, tmp }) = self.part.take() {
            let rest = writer.finish()?;
            file.write_all(&rest).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            file.sync_all().map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
            let dir = self.write_dir();
            let path = Self::part_path(&dir, self.next);
            fs::rename(&tmp, &path)
                .map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), path.display()), e))?;
            sync_dir(&dir);
            self.next += 1;
        }
        Ok(json!({"next_part": self.next}))
    }

    fn finalize(&mut self) -> Result<()> {
        if self.published {
            return Ok(());
        }
        if self.part.as_ref().is_some_and(|p| p.writer.rows() > 0) {
            return Err(Error::internal("file destination (parquet): finalize with rows written but not flushed"));
        }
        if self.mode == SyncMode::FullRefresh {
            let staging = self.staging_dir();
            let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let old = self.target.with_file_name(format!(".{name}.replaced-{}", std::process::id()));
            if self.target.exists() {
                fs::rename(&self.target, &old).map_err(|e| {
                    Error::io(format!("moving {} aside to {}", self.target.display(), old.display()), e)
                })?;
            }
            fs::rename(&staging, &self.target)
                .map_err(|e| Error::io(format!("renaming {} to {}", staging.display(), self.target.display()), e))?;
            if let Some(parent) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent);
            }
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| Error::io(format!("removing {}", old.display()), e))?;
            }
        }
        self.published = true;
        Ok(())
    }
}
