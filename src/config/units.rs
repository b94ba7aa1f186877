//! Value parsers for PM2's units: memory sizes, milliseconds, `min_uptime` durations,
//! `instances`, signal names, booleans and PM2's splitting of `args` strings.
//!
//! Each parser takes a JSON value and returns the parsed value, or `Err(expected)`: a
//! phrase saying what is accepted, which the caller turns into
//! `KEY must be EXPECTED (got VALUE)`.

use std::str::FromStr;

use nix::sys::signal::Signal;
use serde_json::Value;

/// A compact rendering of a value for `(got ...)`: strings quoted, long values cut.
pub fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(37).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// A non-negative whole number, from a JSON number or a string of digits.
fn whole(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// `true`/`false` (also the strings `"true"`/`"false"`, as PM2 compares them).
pub fn parse_bool(v: &Value) -> Result<bool, &'static str> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err("true or false"),
    }
}

/// Milliseconds: a whole number or a string of digits.
pub fn parse_ms(v: &Value) -> Result<u64, &'static str> {
    whole(v).ok_or("a number of milliseconds")
}

/// A whole number (0 or more) that fits in u32.
pub fn parse_count(v: &Value) -> Result<u32, &'static str> {
    whole(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("a whole number (0 or more)")
}

/// `min_uptime`: milliseconds, or PM2's `^\d+(h|m|s)?$` strings (`30s`, `5m`, `1h`).
pub fn parse_min_uptime(v: &Value) -> Result<u64, &'static str> {
    const EXPECTED: &str = "milliseconds or a whole number with s, m or h (e.g. 30s, 5m, 1h)";
    if let Some(n) = whole(v) {
        return Ok(n);
    }
    let Value::String(s) = v else {
        return Err(EXPECTED);
    };
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c @ ('h' | 'm' | 's'))) => (&s[..i], c),
        _ => return Err(EXPECTED),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EXPECTED);
    }
    let n: u64 = digits.parse().map_err(|_| EXPECTED)?;
    let factor = match unit {
        'h' => 3_600_000,
        'm' => 60_000,
        _ => 1_000,
    };
    n.checked_mul(factor).ok_or(EXPECTED)
}

/// A memory size, PM2's `^\d+(G|M|K)?$` (1024-based; a bare number is bytes).
/// Returns the bytes and whether the value had no unit.
pub fn parse_size(v: &Value) -> Result<(u64, bool), &'static str> {
    const EXPECTED: &str = "a whole number of bytes, or a whole number with K, M or G (e.g. 300M)";
    if let Some(n) = whole(v) {
        return Ok((n, true));
    }
    let Value::String(s) = v else {
        return Err(EXPECTED);
    };
    let (digits, factor) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => return Err(EXPECTED),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EXPECTED);
    }
    let n: u64 = digits.parse().map_err(|_| EXPECTED)?;
    n.checked_mul(factor).map(|b| (b, false)).ok_or(EXPECTED)
}

/// The most instances one app may have: each is a process with its pipes and sockets in
/// hotrun, and a typo (`100000`) must not fork-bomb the machine.
pub const MAX_INSTANCES: i64 = 1024;

/// `instances` as written: a whole number (negative allowed, `MAX_INSTANCES` at most), a
/// numeric string, or `'max'` (= 0). Returns PM2's raw count, before CPUs are counted.
pub fn parse_instances(v: &Value) -> Result<i64, &'static str> {
    const TOO_MANY: &str = "a number up to 1024 (each instance is a process), 'max' or -1";
    let n = parse_instance_count(v)?;
    if n > MAX_INSTANCES {
        return Err(TOO_MANY);
    }
    Ok(n)
}

fn parse_instance_count(v: &Value) -> Result<i64, &'static str> {
    const EXPECTED: &str = "a number, 'max' or -1";
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .ok_or(EXPECTED),
        Value::String(s) if s.trim().eq_ignore_ascii_case("max") => Ok(0),
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EXPECTED);
            }
            t.parse().map_err(|_| EXPECTED)
        }
        _ => Err(EXPECTED),
    }
}

/// PM2's rule: 0 = one per CPU, -N = CPUs minus N, never below 1.
pub fn resolve_instances(raw: i64, cpus: u32) -> u32 {
    let cpus = i64::from(cpus.max(1));
    let n = match raw {
        0 => cpus,
        r if r < 0 => cpus + r,
        r => r,
    };
    n.clamp(1, i64::from(u32::MAX)) as u32
}

/// The CPUs hotrun may use (cgroup-aware, unlike PM2's `os.cpus().length`).
pub fn available_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// A signal: `SIGINT`, `sigterm`, `USR2` (case-insensitive, `SIG` optional) or a number.
pub fn parse_signal(v: &Value) -> Result<Signal, &'static str> {
    const EXPECTED: &str = "a signal name such as SIGINT, SIGTERM or SIGUSR2";
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or(EXPECTED),
        Value::String(s) => {
            let up = s.trim().to_ascii_uppercase();
            if let Ok(n) = up.parse::<i32>() {
                return Signal::try_from(n).map_err(|_| EXPECTED);
            }
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            Signal::from_str(&name).map_err(|_| EXPECTED)
        }
        _ => Err(EXPECTED),
    }
}

/// Splits an `args` / `interpreter_args` string as PM2 does: on whitespace, with single or
/// double quotes grouping words (the quotes are removed). No escapes, no expansion.
pub fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&json!("300M")), Ok((314_572_800, false)));
        assert_eq!(parse_size(&json!("1G")), Ok((1_073_741_824, false)));
        assert_eq!(parse_size(&json!("512K")), Ok((524_288, false)));
        assert_eq!(parse_size(&json!("300")), Ok((300, true)));
        assert_eq!(parse_size(&json!(300)), Ok((300, true)));
        assert_eq!(parse_size(&json!(2_000_000)), Ok((2_000_000, true)));
        for bad in [
            json!("1.5G"),
            json!("300MB"),
            json!("300m"),
            json!("M"),
            json!(""),
            json!(-5),
            json!(1.5),
            json!(true),
            json!("99999999999999999999G"),
        ] {
            assert!(parse_size(&bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_ms(&json!(5000)), Ok(5000));
        assert_eq!(parse_ms(&json!("1600")), Ok(1600));
        assert_eq!(parse_ms(&json!(5000.0)), Ok(5000));
        assert!(parse_ms(&json!("soon")).is_err());
        assert!(parse_ms(&json!(-1)).is_err());
        assert!(parse_ms(&json!("5s")).is_err());
        assert_eq!(parse_min_uptime(&json!(1000)), Ok(1000));
        assert_eq!(parse_min_uptime(&json!("2500")), Ok(2500));
        assert_eq!(parse_min_uptime(&json!("30s")), Ok(30_000));
        assert_eq!(parse_min_uptime(&json!("5m")), Ok(300_000));
        assert_eq!(parse_min_uptime(&json!("1h")), Ok(3_600_000));
        for bad in [
            json!("10 minutes"),
            json!("s"),
            json!("1.5s"),
            json!("5ms"),
            json!(null),
            json!("-3s"),
        ] {
            assert!(parse_min_uptime(&bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn instances() {
        assert_eq!(parse_instances(&json!(0)), Ok(0));
        assert_eq!(parse_instances(&json!("max")), Ok(0));
        assert_eq!(parse_instances(&json!(-1)), Ok(-1));
        assert_eq!(parse_instances(&json!("-2")), Ok(-2));
        assert_eq!(parse_instances(&json!("4")), Ok(4));
        assert_eq!(parse_instances(&json!(4)), Ok(4));
        assert!(parse_instances(&json!("three")).is_err());
        assert!(parse_instances(&json!(2.5)).is_err());
        assert!(parse_instances(&json!(true)).is_err());
        assert_eq!(parse_instances(&json!(1024)), Ok(1024));
        assert_eq!(
            parse_instances(&json!(100000)),
            Err("a number up to 1024 (each instance is a process), 'max' or -1")
        );
        assert!(parse_instances(&json!("1025")).is_err());
        assert_eq!(resolve_instances(0, 8), 8);
        assert_eq!(resolve_instances(-1, 8), 7);
        assert_eq!(resolve_instances(-2, 8), 6);
        assert_eq!(resolve_instances(-8, 4), 1);
        assert_eq!(resolve_instances(-1, 1), 1);
        assert_eq!(resolve_instances(4, 2), 4);
        assert!(available_cpus() >= 1);
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal(&json!("SIGINT")), Ok(Signal::SIGINT));
        assert_eq!(parse_signal(&json!("sigterm")), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal(&json!("USR2")), Ok(Signal::SIGUSR2));
        assert_eq!(parse_signal(&json!("hup")), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal(&json!(15)), Ok(Signal::SIGTERM));
        assert!(parse_signal(&json!("SIGFOO")).is_err());
        assert!(parse_signal(&json!("")).is_err());
        assert!(parse_signal(&json!(true)).is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(&json!(true)), Ok(true));
        assert_eq!(parse_bool(&json!("false")), Ok(false));
        assert!(parse_bool(&json!("yes")).is_err());
        assert!(parse_bool(&json!(1)).is_err());
    }

    #[test]
    fn args_splitting() {
        assert_eq!(split_args("start --port 3000"), ["start", "--port", "3000"]);
        assert_eq!(split_args("  a   b\tc\n"), ["a", "b", "c"]);
        assert_eq!(
            split_args("--name 'my app' \"x y\""),
            ["--name", "my app", "x y"]
        );
        assert_eq!(split_args("--flag='a b'"), ["--flag=a b"]);
        assert_eq!(split_args("''"), [""]);
        assert_eq!(split_args("'unterminated x"), ["unterminated x"]);
        assert!(split_args("   ").is_empty());
    }

    #[test]
    fn show_values() {
        assert_eq!(show(&json!("three")), "\"three\"");
        assert_eq!(show(&json!(5)), "5");
        assert!(show(&json!("x".repeat(100))).ends_with("..."));
    }
}
