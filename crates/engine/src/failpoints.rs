//! Failpoints at every durability boundary (STYLE rule 9), armed from the environment so the
//! real binary can be made to fail or die at a precise step without killing it from outside:
//!
//! `BIZON_FAILPOINTS="after_write=error@0.2,before_commit=abort@0.01"` (`BIZON_FAILPOINTS_SEED`
//! picks the draws). `error` raises a transient error (the engine retries from the last
//! commit); `abort` ends the process on the spot, like `kill -9`.

use std::sync::Mutex;

use bizon_core::{Error, Result};

pub const POINTS: &[&str] = &[
    "before_write",
    "after_write",
    "before_flush",
    "before_commit",
    "after_commit",
    "before_finalize",
    "after_finalize",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Error,
    Abort,
}

#[derive(Default)]
pub struct Failpoints {
    armed: Vec<(String, Action, f64)>,
    rng: Mutex<u64>,
}

impl Failpoints {
    /// Parse `point=action@probability,…`; an unknown point or action is a config error.
    pub fn parse(spec: &str, seed: u64) -> Result<Self> {
        let mut armed = Vec::new();
        for part in spec.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || {
                Error::config(format!(
                    "BIZON_FAILPOINTS: cannot parse `{part}`; expected point=error|abort[@probability]"
                ))
            };
            let (point, rest) = part.split_once('=').ok_or_else(bad)?;
            if !POINTS.contains(&point) {
                return Err(Error::config(format!(
                    "BIZON_FAILPOINTS: unknown point `{point}`; points: {}",
                    POINTS.join(", ")
                )));
            }
            let (action, p) = match rest.split_once('@') {
                Some((a, p)) => (a, p.parse::<f64>().map_err(|_| bad())?),
                None => (rest, 1.0),
            };
            let action = match action {
                "error" => Action::Error,
                "abort" => Action::Abort,
                _ => return Err(bad()),
            };
            armed.push((point.to_owned(), action, p));
        }
        Ok(Failpoints { armed, rng: Mutex::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1) })
    }

    pub fn from_env() -> Result<Self> {
        let spec = std::env::var("BIZON_FAILPOINTS").unwrap_or_default();
        let seed = std::env::var("BIZON_FAILPOINTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
        Self::parse(&spec, seed)
    }

    fn draw(&self) -> f64 {
        let mut r = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        (*r >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fire `point` if armed and the draw says so.
    pub fn hit(&self, point: &str) -> Result<()> {
        for (p, action, prob) in &self.armed {
            if p == point && self.draw() < *prob {
                match action {
                    Action::Error => return Err(Error::transient(format!("failpoint `{point}` fired"))),
                    Action::Abort => {
                        eprintln!("failpoint `{point}` fired: aborting");
                        std::process::abort();
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_fires() {
        let f = Failpoints::parse("after_write=error", 1).unwrap();
        assert!(f.hit("after_write").is_err());
        assert!(f.hit("before_write").is_ok());
        let never = Failpoints::parse("after_write=error@0", 1).unwrap();
        assert!(never.hit("after_write").is_ok());
        assert!(Failpoints::parse("nowhere=error", 1).is_err());
        assert!(Failpoints::parse("after_write=explode", 1).is_err());
    }
}
