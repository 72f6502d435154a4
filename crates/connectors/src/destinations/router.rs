//! Routes records to several destinations by their route: one per `streams:` entry (file, logger,
//! null), and the dead-letter file for records a source could not decode. The PostgreSQL
//! destination routes to its tables itself (one transaction), and joins a router as its one
//! transactional part, which flushes last.
//!
//! Exactly-once across the parts: the router's commit token is `{"parts": [token of each
//! non-transactional part]}`, plus the transactional part's own keys (its `seq`). Those parts
//! flush (fsync) first; the transactional part then commits the cursor carrying the whole
//! token, so whichever commit the engine resumes from, every file is truncated back to the
//! offset that commit recorded.

use bizon_core::record::DEAD_LETTER;
use bizon_core::{BatchMeta, Destination, DestinationContext, DestinationCursor, Error, Json, RecordBatch, Result};
use serde_json::json;

use crate::error::ConfigError;

/// Which records a part takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// One route (a `streams:` entry, or [`DEAD_LETTER`]).
    Route(u16),
    /// Every route but the dead letters (a destination that routes to its tables itself).
    AllButDeadLetters,
}

pub struct Part {
    pub name: String,
    pub takes: Takes,
    pub destination: Box<dyn Destination>,
    /// Commits its data with the cursor (PostgreSQL): at most one, flushed last.
    pub transactional: bool,
}

pub struct Router {
    parts: Vec<Part>,
    /// Records a part refused and this router dead-lettered since the last `take_dead_lettered`.
    diverted: u64,
}

impl Router {
    pub fn new(mut parts: Vec<Part>) -> std::result::Result<Self, ConfigError> {
        if parts.iter().filter(|p| p.transactional).count() > 1 {
            return Err(ConfigError::SeveralTransactional);
        }
        parts.sort_by_key(|p| p.transactional); // stable: the transactional one goes last
        Ok(Router { parts, diverted: 0 })
    }

    fn part_for(&mut self, route: u16) -> Result<&mut Part> {
        let found = self.parts.iter().position(|p| match p.takes {
            Takes::Route(r) => r == route,
            Takes::AllButDeadLetters => route != DEAD_LETTER,
        });
        match found {
            Some(i) => Ok(&mut self.parts[i]),
            None if route == DEAD_LETTER => {
                Err(Error::internal("a dead letter arrived but no dead-letter target is set"))
            }
            None => Err(Error::internal(format!("no destination for route {route}"))),
        }
    }

    /// Records a part refused, with their errors, to the dead-letter part (same commit).
    fn dead_letters(&mut self, from: &str, rejected: Vec<bizon_core::Rejected>, meta: &BatchMeta) -> Result<()> {
        let mut batch = RecordBatch::with_capacity(rejected.len(), 0);
        for r in &rejected {
            tracing::warn!(record = %r.id, destination = from, error = %r.error, "record sent to the dead-letter file");
            let record: Json = serde_json::from_slice(&r.data)
                .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&r.data).into_owned()));
            let row = json!({"source_record_id": r.id, "destination": from, "error": r.error, "record": record});
            batch.push_routed(DEAD_LETTER, &r.id, r.timestamp, |out| {
                let _ = serde_json::to_writer(&mut *out, &row);
            });
        }
        self.diverted += rejected.len() as u64;
        let dlq = self.part_for(DEAD_LETTER).map_err(|_| {
            Error::internal(format!("`{from}` refused {} records but no dead-letter target is set", rejected.len()))
        })?;
        dlq.destination.write(&batch, meta)
    }

    fn token_of(token: Option<&Json>, i: usize) -> Option<&Json> {
        token.and_then(|t| t.get("parts")).and_then(|p| p.get(i)).filter(|t| !t.is_null())
    }
}

impl Destination for Router {
    fn recover_cursor(&mut self, ctx: &DestinationContext) -> Result<Option<DestinationCursor>> {
        match self.parts.iter_mut().find(|p| p.transactional) {
            Some(p) => p.destination.recover_cursor(ctx),
            None => Ok(None),
        }
    }

    fn open(&mut self, ctx: &DestinationContext, resume: Option<&Json>) -> Result<Json> {
        let mut tokens = Vec::new();
        let mut out = json!({});
        for (i, p) in self.parts.iter_mut().enumerate() {
            if p.transactional {
                let t = p.destination.open(ctx, resume)?;
                if let Json::Object(m) = t {
                    out.as_object_mut().expect("an object").extend(m);
                }
            } else {
                tokens.push(p.destination.open(ctx, Self::token_of(resume, i))?);
            }
        }
        out["parts"] = Json::Array(tokens);
        Ok(out)
    }

    fn write(&mut self, batch: &RecordBatch, meta: &BatchMeta) -> Result<()> {
        let parts = match batch.single_route() {
            Some(route) => vec![(route, None)],
            None => batch.split_routes().into_iter().map(|(r, b)| (r, Some(b))).collect(),
        };
        for (route, part_batch) in parts {
            let part = self.part_for(route)?;
            part.destination.write(part_batch.as_ref().unwrap_or(batch), meta)?;
            let rejected = part.destination.take_rejected();
            if !rejected.is_empty() {
                let name = part.name.clone();
                self.dead_letters(&name, rejected, meta)?;
            }
        }
        Ok(())
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.diverted)
    }

    fn flush(&mut self, next: &DestinationCursor) -> Result<Json> {
        let mut token = match &next.token {
            Json::Object(m) => Json::Object(m.clone()),
            _ => json!({}),
        };
        let mut tokens = Vec::new();
        for p in self.parts.iter_mut().filter(|p| !p.transactional) {
            let i = tokens.len();
            let mut c = next.clone();
            c.token = Self::token_of(Some(&next.token), i).cloned().unwrap_or(Json::Null);
            tokens.push(p.destination.flush(&c)?);
        }
        token["parts"] = Json::Array(tokens);
        if let Some(p) = self.parts.iter_mut().find(|p| p.transactional) {
            let mut c = next.clone();
            c.token = token;
            return p.destination.flush(&c);
        }
        Ok(token)
    }

    fn finalize(&mut self) -> Result<()> {
        for p in &mut self.parts {
            p.destination.finalize().map_err(|e| e.context(format!("finalizing `{}`", p.name)))?;
        }
        Ok(())
    }
}
