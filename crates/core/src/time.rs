//! Timestamps as microseconds since the Unix epoch, formatted the way bizon's rows show them
//! (`2024-01-01T00:00:00.000000+00:00`, UTC). Written here: it is a few lines of civil-date
//! arithmetic, and the hot path formats one timestamp per batch, not per record.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Append `2024-01-01T00:00:00.000000+00:00` for `micros` to `out` (32 bytes).
pub fn write_rfc3339(out: &mut Vec<u8>, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let mut buf = [0u8; 32];
    let digits = |buf: &mut [u8], mut v: u32| {
        for b in buf.iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(&mut buf[0..4], y.clamp(0, 9999) as u32);
    buf[4] = b'-';
    digits(&mut buf[5..7], mo);
    buf[7] = b'-';
    digits(&mut buf[8..10], d);
    buf[10] = b'T';
    digits(&mut buf[11..13], sod / 3600);
    buf[13] = b':';
    digits(&mut buf[14..16], sod / 60 % 60);
    buf[16] = b':';
    digits(&mut buf[17..19], sod % 60);
    buf[19] = b'.';
    digits(&mut buf[20..26], frac);
    buf[26..32].copy_from_slice(b"+00:00");
    out.extend_from_slice(&buf);
}

/// Formats timestamps like [`write_rfc3339`], reusing the date part while consecutive
/// timestamps fall on the same day (the common case on the hot path).
#[derive(Debug, Clone, Default)]
pub struct Rfc3339Writer {
    day: Option<i64>,
    date: [u8; 11],
}

impl Rfc3339Writer {
    pub fn write(&mut self, out: &mut Vec<u8>, micros: i64) {
        let secs = micros.div_euclid(1_000_000);
        let day = secs.div_euclid(86_400);
        if self.day != Some(day) {
            let mut v = Vec::with_capacity(32);
            write_rfc3339(&mut v, micros);
            self.date.copy_from_slice(&v[..11]);
            self.day = Some(day);
        }
        let frac = micros.rem_euclid(1_000_000) as u32;
        let sod = secs.rem_euclid(86_400) as u32;
        let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
        let mut buf = [0u8; 32];
        buf[..11].copy_from_slice(&self.date);
        buf[11..13].copy_from_slice(&two(sod / 3600));
        buf[13] = b':';
        buf[14..16].copy_from_slice(&two(sod / 60 % 60));
        buf[16] = b':';
        buf[17..19].copy_from_slice(&two(sod % 60));
        buf[19] = b'.';
        let mut f = frac;
        for b in buf[20..26].iter_mut().rev() {
            *b = b'0' + (f % 10) as u8;
            f /= 10;
        }
        buf[26..32].copy_from_slice(b"+00:00");
        out.extend_from_slice(&buf);
    }
}

pub fn format_rfc3339(micros: i64) -> String {
    let mut v = Vec::with_capacity(32);
    write_rfc3339(&mut v, micros);
    String::from_utf8(v).unwrap_or_default()
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+00:00|±HH:MM)` into microseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut frac = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        let mut padded = format!("{:0<6}", digits);
        padded.truncate(6);
        frac = padded.parse().ok()?;
    }
    let offset = match &s[i..] {
        "" | "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(&tz[0..1], "+" | "-") && &tz[3..4] == ":" => {
            let sign = if &tz[0..1] == "-" { -1 } else { 1 };
            sign * (tz[1..3].parse::<i64>().ok()? * 3600 + tz[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(secs * 1_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_rfc3339(1_704_067_200_000_001), "2024-01-01T00:00:00.000001+00:00");
        assert_eq!(format_rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn cached_writer_matches_plain_formatting() {
        let mut w = Rfc3339Writer::default();
        for t in [0, 1, 86_399_999_999, 86_400_000_000, 1_704_067_200_123_456, -1, 1_704_067_200_123_457] {
            let mut a = Vec::new();
            w.write(&mut a, t);
            assert_eq!(String::from_utf8(a).unwrap(), format_rfc3339(t));
        }
    }

    #[test]
    fn parse_inverts_format() {
        for t in [0, 1_704_067_200_123_456, 4_102_444_799_999_999, 951_782_400_000_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2024-01-01T01:00:00+01:00"), Some(1_704_067_200_000_000));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00.5Z"), Some(1_704_067_200_500_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
