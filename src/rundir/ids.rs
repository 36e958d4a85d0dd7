//! Run ids and the UTC clock they are made of: `<name>-<YYYYmmdd-HHMMSS>` for runs started from
//! a profile, the dashboard and the probe alike.

use std::path::Path;

/// (year, month, day, hour, minute, second) UTC of a Unix time (Howard Hinnant's
/// civil_from_days).
fn civil(t: f64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = t.floor() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (sod / 3600) as u32,
        ((sod % 3600) / 60) as u32,
        (sod % 60) as u32,
    )
}

/// Seconds since the epoch as `YYYY-mm-dd HH:MM:SS` UTC.
pub fn utc_datetime(t: f64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// Seconds since the epoch as `YYYYmmdd-HHMMSS` UTC, the time part of run ids.
pub fn utc_stamp(t: f64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// The name part of a run id: a profile file's stem (`profiles/b1.ron` → `b1`).
pub fn profile_stem(profile: &Path) -> String {
    profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
}

/// `<name>-<YYYYmmdd-HHMMSS>` (UTC) of a run started at `now`.
pub fn run_id(name: &str, now: f64) -> String {
    format!("{name}-{}", utc_stamp(now))
}

/// Whether `s` is a run id's time part, `YYYYmmdd-HHMMSS`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15 && b[8] == b'-' && b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit)
}

/// Whether `id` is one of the default ids of runs of `name`: `<name>` or `<name>-<stamp>`.
pub fn is_run_of(id: &str, name: &str) -> bool {
    id == name
        || id
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(is_stamp)
}

/// The id of a new run of `profile` started at `now`.
pub fn new_run_id(profile: &Path, now: f64) -> String {
    run_id(&profile_stem(profile), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_by_hand() {
        assert_eq!(utc_stamp(0.0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_860_000.0), "20261128-100000");
        assert_eq!(utc_stamp(1_795_860_900.5), "20261128-101500");
        assert_eq!(utc_stamp(951_782_400.0), "20000229-000000", "leap day");
        assert_eq!(utc_datetime(0.0), "1970-01-01 00:00:00");
        assert_eq!(utc_datetime(951_782_400.0), "2000-02-29 00:00:00");
    }

    #[test]
    fn run_ids_name_the_profile() {
        assert_eq!(
            new_run_id(Path::new("profiles/demo-hs.ron"), 1_795_860_000.0),
            "demo-hs-20261128-100000"
        );
        assert_eq!(new_run_id(Path::new(""), 0.0), "run-19700101-000000");
    }

    #[test]
    fn run_ids_are_read_back() {
        assert!(is_stamp("20261128-101500"));
        assert!(!is_stamp("2026112x-101500"), "digits only");
        assert!(!is_stamp("20261128_101500"), "a dash between date and time");
        assert!(!is_stamp("20261128-1015"), "all fifteen characters");
        assert!(!is_run_of("demo-hs-2026112x-101500", "demo-hs"));
        assert!(is_run_of("demo-hs-20261128-101500", "demo-hs"));
        assert!(is_run_of("demo-hs", "demo-hs"));
        assert!(!is_run_of("demo-hs-x-20261128-101500", "demo-hs"));
        assert!(!is_run_of("demo-20261128-101500", "demo-hs"));
    }
}
