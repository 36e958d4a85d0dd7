//! README's "Figures" section, checked for what can be checked without timing anything: every
//! command it quotes is one the binary accepts (subcommands and flags; values are checked by the
//! commands themselves), the measurement it names exists, and every
//! derived number (a ratio, a percentage) agrees with the figures it is derived from, within the
//! rounding of the digits shown.

use std::process::Command;

fn figures() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("\n## Figures")
        .expect("README has a Figures section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    rest[..end].to_string()
}

/// A number as printed, with half a unit of its last digit (the rounding it may carry).
fn num(s: &str) -> (f64, f64) {
    let s = s.trim().trim_matches('*').replace('−', "-");
    let decimals = s.split('.').nth(1).map_or(0, str::len);
    let v: f64 = s
        .parse()
        .unwrap_or_else(|_| panic!("'{s}' is not a number"));
    (v, 0.5 * 10f64.powi(-(decimals as i32)))
}

/// Whether `stated` (as printed) can be `f(a, b)` for some a, b within their rounding.
fn consistent(stated: &str, a: &str, b: &str, f: impl Fn(f64, f64) -> f64) -> bool {
    let ((r, hr), (a, ha), (b, hb)) = (num(stated), num(a), num(b));
    let corners = [
        f(a - ha, b - hb),
        f(a - ha, b + hb),
        f(a + ha, b - hb),
        f(a + ha, b + hb),
    ];
    let lo = corners.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = corners.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    r + hr >= lo && r - hr <= hi
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b
}

/// The text between `before` and `after`, after the first `before`.
fn between<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    let i = text
        .find(before)
        .unwrap_or_else(|| panic!("README figures: '{before}' not found (update this test)"));
    let rest = &text[i + before.len()..];
    &rest[..rest
        .find(after)
        .unwrap_or_else(|| panic!("'{after}' after '{before}'"))]
}

/// Table rows (cells, trimmed) of the first table whose header contains `header`.
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !(l.starts_with('|') && l.contains(header)));
    assert!(
        lines.next().is_some(),
        "README figures: no table with '{header}'"
    );
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn every_command_in_the_figures_is_accepted_by_the_binary() {
    let text = figures();
    let mut commands = Vec::new();
    // Inline code spans (they may wrap over a line break) and indented code lines.
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 1 && span.starts_with("repopt-tui ") {
            commands.push(span.replace('\n', " "));
        }
    }
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("    repopt-tui ") {
            commands.push(format!("repopt-tui {cmd}"));
        }
        if line.contains("cargo run --release -- ") {
            let cmd = between(line, "cargo run --release -- ", "`");
            commands.push(format!("repopt-tui {cmd}"));
        }
    }
    assert!(commands.len() >= 5, "commands found: {commands:?}");
    for cmd in &commands {
        let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        // Everything before --help is parsed and validated by clap, then the help is printed.
        args.push("--help");
        let out = Command::new(env!("CARGO_BIN_EXE_repopt-tui"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "README's `{cmd}` is not accepted: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_dashboard_measurement_it_names_exists() {
    let text = figures();
    let measure = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/dashboard/tui_measure.rs"
    ))
    .unwrap();
    let cmd = between(&text, "REPOPT_MEASURE_RUNNER=", "\n\n");
    // cargo test's filter matches every test whose name contains it.
    let filter = cmd.split_whitespace().last().unwrap();
    let names: Vec<&str> = measure
        .split("fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .collect();
    assert!(
        names.iter().any(|n| n.contains(filter)),
        "no test in tests/dashboard/tui_measure.rs matches '{filter}': {names:?}"
    );
    for var in cmd
        .split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(k, _)| k))
    {
        let var = var.trim_start_matches("REPOPT_MEASURE_");
        assert!(
            measure.contains(&format!("REPOPT_MEASURE_{var}")),
            "tests/dashboard/tui_measure.rs does not read REPOPT_MEASURE_{var}"
        );
    }
}

#[test]
fn derived_figures_agree_with_the_figures_they_come_from() {
    let text = figures();
    // Training step: ours / PyTorch (A0 and B1, each round a row).
    let rows = table(&text, "ours / PyTorch");
    assert!(rows.len() >= 3);
    for r in &rows {
        assert!(
            consistent(&r[3], &r[1], &r[2], ratio),
            "step table, {}: {} / {} is not {}",
            r[0],
            r[1],
            r[2],
            r[3]
        );
    }
    // Sentences, whatever their line breaks.
    let flat = text.replace('\n', " ");
    let text = flat.as_str();
    // Bookkeeping: "A s of B s (C%)".
    let sentence = &text[text.find("took: ").expect("the bookkeeping sentence")..];
    let a = between(sentence, "took: ", " s of ");
    let b = between(sentence, " s of ", " s (");
    let c = between(sentence, " s (", "%)");
    assert!(
        consistent(c, a, b, |x, y| 100.0 * x / y),
        "bookkeeping: {a} s of {b} s is not {c}%"
    );
    // Dashboard: "N images/s alone and M watched (**P%**".
    let alone = between(text, "the run did ", " images/s alone");
    let watched = between(text, "images/s alone and ", " watched");
    let change = between(text, " watched (**", "%**");
    assert!(
        consistent(change, watched, alone, |w, a| 100.0 * (w - a) / a),
        "dashboard: {alone} → {watched} images/s is not {change}%"
    );
    // MaxBS: "t / r / h" then "(Rx)" or "**Rx**" = t / r.
    let rows = table(&figures(), "MaxBS target / RepVGG / HS");
    assert!(rows.len() >= 2);
    for r in &rows {
        let triple = |cell: &str| -> (String, String) {
            let parts: Vec<&str> = cell.split('(').next().unwrap().split('/').collect();
            (parts[0].trim().to_string(), parts[1].trim().to_string())
        };
        let factor = |cell: &str| -> String {
            let inner = cell.rsplit('(').next().unwrap();
            inner
                .trim_matches(|c| c == ')' || c == '*')
                .trim_end_matches('x')
                .to_string()
        };
        let checks = [
            (triple(&r[1]), factor(&r[2])),
            (triple(&r[3]), factor(&r[3])),
            (triple(&r[4]), factor(&r[4])),
        ];
        for ((a, b), stated) in checks {
            assert!(
                consistent(
                    stated.trim_matches('*').trim_end_matches('x'),
                    &a,
                    &b,
                    ratio
                ),
                "MaxBS {}: {a} / {b} is not {stated}x",
                r[0]
            );
        }
    }
}

#[test]
fn the_consistency_check_is_strict_enough_to_fail() {
    assert!(consistent("0.20", "157", "803", ratio));
    assert!(!consistent("0.21", "157", "803", ratio));
    assert!(
        consistent("1.32", "113", "86", ratio),
        "113/86 with rounding"
    );
    assert!(!consistent("1.34", "113", "86", ratio));
    assert!(consistent("−0.3", "1116", "1119", |w, a| 100.0 * (w - a) / a));
}
