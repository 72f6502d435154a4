//! Timestamps as microseconds since the Unix epoch, formatted the way bizon's rows show them
//! (`2024-01-01T00:00:00.000000+00:00`, UTC). The calendar (days since the epoch → year, month,
//! day) and RFC 3339 parsing come from the `time` crate. The fixed-width digits are written here:
//! destinations format a timestamp per record, and `time`'s formatter costs four times as much;
//! the tests check these digits against it.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// The first instant RFC 3339 can write, 0000-01-01T00:00:00Z, in microseconds since the epoch.
pub const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// The last instant RFC 3339 can write, 9999-12-31T23:59:59.999999Z, in microseconds since the
/// epoch.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Julian day number of 1970-01-01, the epoch's first day.
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

pub fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Append `2024-01-01T00:00:00.000000+00:00` for `micros` to `out` (32 bytes). Instants outside
/// years 0000–9999, which RFC 3339 cannot write, are written as the nearest one inside.
pub fn write_rfc3339(out: &mut Vec<u8>, micros: i64) {
    Rfc3339Writer::default().write(out, micros)
}

pub fn format_rfc3339(micros: i64) -> String {
    let mut v = Vec::with_capacity(32);
    write_rfc3339(&mut v, micros);
    String::from_utf8(v).unwrap_or_default()
}

/// Formats timestamps like [`write_rfc3339`], reusing the date part while consecutive
/// timestamps fall on the same day (the common case on the hot path).
#[derive(Debug, Clone, Default)]
pub struct Rfc3339Writer {
    /// Days since the epoch of `date`.
    day: Option<i64>,
    /// `YYYY-MM-DDT` of `day`.
    date: [u8; 11],
}

/// Two decimal digits of `v` (< 100).
fn two(v: u32) -> [u8; 2] {
    [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]
}

/// `YYYY-MM-DDT` of the `day`th day since the epoch (within years 0000–9999).
fn date_prefix(day: i64) -> [u8; 11] {
    let (year, month, dom) = i32::try_from(day + EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .map(Date::to_calendar_date)
        // Never taken: callers clamp to years 0000–9999, well inside `time`'s range.
        .unwrap_or((1970, Month::January, 1));
    let year = year.clamp(0, 9999) as u32;
    let mut buf = [0u8; 11];
    buf[0..2].copy_from_slice(&two(year / 100));
    buf[2..4].copy_from_slice(&two(year % 100));
    buf[4] = b'-';
    buf[5..7].copy_from_slice(&two(u32::from(u8::from(month))));
    buf[7] = b'-';
    buf[8..10].copy_from_slice(&two(u32::from(dom)));
    buf[10] = b'T';
    buf
}

impl Rfc3339Writer {
    pub fn write(&mut self, out: &mut Vec<u8>, micros: i64) {
        let micros = micros.clamp(MIN_MICROS, MAX_MICROS);
        let day = micros.div_euclid(MICROS_PER_DAY);
        if self.day != Some(day) {
            self.date = date_prefix(day);
            self.day = Some(day);
        }
        // The time of day is plain digits: no calendar in it.
        let of_day = micros.rem_euclid(MICROS_PER_DAY);
        let (secs, frac) = ((of_day / 1_000_000) as u32, (of_day % 1_000_000) as u32);
        let mut buf = [0u8; 32];
        buf[..11].copy_from_slice(&self.date);
        buf[11..13].copy_from_slice(&two(secs / 3600));
        buf[13] = b':';
        buf[14..16].copy_from_slice(&two(secs / 60 % 60));
        buf[16] = b':';
        buf[17..19].copy_from_slice(&two(secs % 60));
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

/// Parse an RFC 3339 timestamp into microseconds since the epoch: `YYYY-MM-DDTHH:MM:SS`, optional
/// fraction (digits past microseconds are dropped), then `Z` or `±HH:MM`. As bizon and PostgreSQL
/// also write them, a space may replace the `T` and a missing offset means UTC. Impossible dates
/// and times (`2024-02-31`, `2023-02-29`, `24:00:00`) are `None`, and so are instants outside
/// years 0000–9999 UTC, which [`write_rfc3339`] could not write back.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // The `time` crate takes any byte between date and time; RFC 3339 names `T` (or `t`) and
    // allows a space.
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let has_offset = b.get(19..).is_some_and(|rest| rest.iter().any(|c| matches!(c, b'Z' | b'z' | b'+' | b'-')));
    let parsed =
        if has_offset { OffsetDateTime::parse(s, &Rfc3339) } else { OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339) };
    let micros = i64::try_from(parsed.ok()?.unix_timestamp_nanos().div_euclid(1000)).ok()?;
    (MIN_MICROS..=MAX_MICROS).contains(&micros).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_2024: i64 = 1_704_067_200_000_000;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(format_rfc3339(JAN_2024 + 1), "2024-01-01T00:00:00.000001+00:00");
        assert_eq!(format_rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000+00:00");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999+00:00");
    }

    #[test]
    fn formats_out_of_range_instants_at_the_nearest_end() {
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00.000000+00:00");
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999999+00:00");
        assert_eq!(parse_rfc3339(&format_rfc3339(MIN_MICROS)), Some(MIN_MICROS));
        assert_eq!(parse_rfc3339(&format_rfc3339(MAX_MICROS)), Some(MAX_MICROS));
    }

    #[test]
    fn cached_writer_matches_plain_formatting() {
        let mut w = Rfc3339Writer::default();
        let instants = [0, 1, 86_399_999_999, 86_400_000_000, JAN_2024 + 123_456, -1, JAN_2024 + 123_457];
        for t in instants.into_iter().chain([i64::MIN, MIN_MICROS, MAX_MICROS, i64::MAX, 0]) {
            let mut a = Vec::new();
            w.write(&mut a, t);
            assert_eq!(String::from_utf8(a).unwrap(), format_rfc3339(t));
        }
    }

    #[test]
    fn parse_inverts_format() {
        for t in [0, JAN_2024 + 123_456, 4_102_444_799_999_999, 951_782_400_000_000, -1] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339(""), None);
    }

    #[test]
    fn parse_rejects_impossible_dates_and_times() {
        assert_eq!(parse_rfc3339("2024-02-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-04-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-00-10T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T24:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T23:60:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T12:00:00+24:00"), None);
        // A leap second only ends a month (UTC); it reads as the last microsecond before it.
        assert_eq!(parse_rfc3339("2024-01-01T12:00:60Z"), None);
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), parse_rfc3339("2016-12-31T23:59:59.999999Z"));
        // Leap days exist in leap years only (2000 is one, 1900 is not).
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800_000_000));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None);
        // Outside the years RFC 3339 can write once the offset is applied.
        assert_eq!(parse_rfc3339("0000-01-01T00:00:00+01:00"), None);
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59-01:00"), None);
        // Malformed rather than impossible.
        assert_eq!(parse_rfc3339("2024-01-01X00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00.Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z junk"), None);
        assert_eq!(parse_rfc3339("2024-1-01T00:00:00Z"), None);
    }

    #[test]
    fn parse_reads_offsets_fractions_and_bizon_spellings() {
        assert_eq!(parse_rfc3339("2024-01-01T01:00:00+01:00"), Some(JAN_2024));
        assert_eq!(parse_rfc3339("2023-12-31T18:30:00-05:30"), Some(JAN_2024));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00.5Z"), Some(JAN_2024 + 500_000));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00.123456789Z"), Some(JAN_2024 + 123_456));
        assert_eq!(parse_rfc3339("2024-01-01t00:00:00.000001z"), Some(JAN_2024 + 1));
        assert_eq!(parse_rfc3339("2024-01-01 00:00:00"), Some(JAN_2024));
        assert_eq!(parse_rfc3339("2024-01-01 00:00:00.25"), Some(JAN_2024 + 250_000));
        assert_eq!(parse_rfc3339("2024-01-01 05:45:00+05:45"), Some(JAN_2024));
        // Any offset is written back as the same instant in UTC.
        let t = parse_rfc3339("2024-03-10T02:30:00.000123-08:00").unwrap();
        assert_eq!(format_rfc3339(t), "2024-03-10T10:30:00.000123+00:00");
    }

    /// `time`'s own formatting of bizon's layout: the reference for the hand-written digits.
    fn reference(micros: i64) -> String {
        let layout = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
        );
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
        t.format(layout).unwrap()
    }

    #[test]
    fn format_matches_time_and_parse_round_trips_on_spread_instants() {
        let mut w = Rfc3339Writer::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = MIN_MICROS + (state % (MAX_MICROS - MIN_MICROS) as u64) as i64;
            let text = format_rfc3339(t);
            assert_eq!(text, reference(t));
            assert_eq!(parse_rfc3339(&text), Some(t), "{text}");
            let mut cached = Vec::new();
            w.write(&mut cached, t);
            assert_eq!(cached, text.as_bytes());
        }
    }
}
