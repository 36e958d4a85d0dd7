//! Number, size, duration and time formatting for a narrow screen.

/// Three significant digits, SI suffixes from 10⁴ up (`12.3k`, `1.23M`), scientific notation for
/// small magnitudes (`1.97e-4`). Trailing zeros are trimmed (`2.5`, not `2.50`).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "–".into()
        } else {
            "∞".into()
        };
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if a >= 1e4 {
        return si(v);
    }
    if a < 1e-2 {
        return sci(v);
    }
    sig(v, 3)
}

/// `v` with `digits` significant digits, trailing zeros trimmed; no exponent (for 1e-2 ≤ |v| < 1e4).
pub fn sig(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return num(v);
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - mag).max(0) as usize;
    trim(format!("{v:.decimals$}"))
}

fn sci(v: f64) -> String {
    let s = format!("{v:.2e}");
    // `1.97e-4`; trim `1.00e-4` to `1e-4`.
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{}", trim(m.to_string()), e),
        None => s,
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" { "0".into() } else { t.into() }
    } else {
        s
    }
}

/// SI suffixes with three significant digits: `950`, `1.23k`, `45.6k`, `1.2M`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return num(v);
    }
    let a = v.abs();
    let (div, suffix) = if a >= 1e12 {
        (1e12, "T")
    } else if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let scaled = v / div;
    // 999.6k rounds to "1000k": move up a unit.
    if suffix != "T" && (sig(scaled, 3).trim_start_matches('-').len() > 3 && scaled.abs() >= 999.5)
    {
        return si(v.signum() * div * 1000.0);
    }
    if scaled.abs() < 1e-2 && scaled != 0.0 {
        return sci(v);
    }
    format!("{}{suffix}", sig(scaled, 3))
}

/// Binary byte sizes: `512 B`, `1.5 KiB`, `61.2 GiB`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{} {}", sig(v, 3), UNITS[unit])
}

pub use crate::output::duration;

/// Time since `t`: `now`, `12s`, `5m`, `3h`, `6d` (coarse: for a list column).
pub fn age(now: f64, t: f64) -> String {
    let d = (now - t).max(0.0);
    if d < 1.0 {
        "now".into()
    } else if d < 60.0 {
        format!("{}s", d as u64)
    } else if d < 3600.0 {
        format!("{}m", (d / 60.0) as u64)
    } else if d < 86_400.0 {
        format!("{}h", (d / 3600.0) as u64)
    } else {
        format!("{}d", (d / 86_400.0) as u64)
    }
}

/// Labels for an axis over [lo, hi]: `n` evenly spaced values with a precision that tells them
/// apart (about three significant digits of the range).
pub fn axis_labels(lo: f64, hi: f64, n: usize, style: AxisStyle) -> Vec<String> {
    let n = n.max(2);
    let values: Vec<f64> = (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
        .collect();
    values
        .iter()
        .map(|&v| axis_value(v, lo, hi, style))
        .collect()
}

/// How axis values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisStyle {
    /// Plain numbers, precision from the range.
    Plain,
    /// SI suffixes (images/s).
    Si,
    /// The axis holds log10 of the value: labels show 10^v.
    Log10,
}

fn axis_value(v: f64, lo: f64, hi: f64, style: AxisStyle) -> String {
    match style {
        AxisStyle::Log10 => num(10f64.powf(v)),
        AxisStyle::Si => si(v),
        AxisStyle::Plain => {
            let span = (hi - lo).abs();
            let big = lo.abs().max(hi.abs());
            if big == 0.0 {
                return "0".into();
            }
            if !(1e-2..1e5).contains(&big) {
                return num(v);
            }
            let decimals = if span > 0.0 {
                (1 - span.log10().floor() as i32).clamp(0, 5) as usize
            } else {
                2
            };
            trim(format!("{v:.decimals$}"))
        }
    }
}

pub use crate::rundir::ids::utc_datetime;

pub use crate::output::plural;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(2.345), "2.35");
        assert_eq!(num(69.2425), "69.2");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(0.000197), "1.97e-4");
        assert_eq!(num(0.0001), "1e-4");
        assert_eq!(num(1234.0), "1234");
        assert_eq!(num(12_345.0), "12.3k");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(si(2450.0), "2.45k");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(999_700.0), "1M");
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(bytes(61_000_000_000), "56.8 GiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(duration(65.0), "1m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(age(100.0, 40.0), "1m");
    }

    #[test]
    fn axis_precision_follows_the_range() {
        assert_eq!(
            axis_labels(2.0, 2.5, 3, AxisStyle::Plain),
            vec!["2", "2.25", "2.5"]
        );
        assert_eq!(
            axis_labels(0.0, 60.0, 3, AxisStyle::Plain),
            vec!["0", "30", "60"]
        );
        assert_eq!(
            axis_labels(0.0, 0.0002, 2, AxisStyle::Plain),
            vec!["0", "2e-4"]
        );
        assert_eq!(
            axis_labels(1000.0, 3000.0, 3, AxisStyle::Si),
            vec!["1k", "2k", "3k"]
        );
        assert_eq!(
            axis_labels(-1.0, 1.0, 3, AxisStyle::Log10),
            vec!["0.1", "1", "10"]
        );
    }

    #[test]
    fn utc() {}
}
