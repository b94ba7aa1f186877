//! PM2's app schema as hotrun sees it: every key PM2 knows (PM2 7 `lib/API/schema.json`),
//! its aliases, its automatic camelCase forms, which keys hotrun implements, and the
//! "did you mean" suggestion for unknown keys.

/// Keys whose values hotrun turns into the plan (canonical snake_case names).
pub const IMPLEMENTED: &[&str] = &[
    "name",
    "script",
    "args",
    "cwd",
    "interpreter",
    "interpreter_args",
    "instances",
    "exec_mode",
    "wait_ready",
    "listen_timeout",
    "kill_timeout",
    "kill_signal",
    "shutdown_with_message",
    "autorestart",
    "max_restarts",
    "min_uptime",
    "restart_delay",
    "exp_backoff_restart_delay",
    "stop_exit_codes",
    "env",
    "instance_var",
    "increment_var",
    "cron_restart",
    "port",
    "out_file",
    "error_file",
    "log_file",
    "merge_logs",
    "log_date_format",
    "time",
    "max_memory_restart",
    "watch",
    "ignore_watch",
    "watch_delay",
    "watch_options",
    // hotrun's own keys
    "listen",
    "max_surge",
    "min_ready",
    "drain_delay",
    "ready_pattern",
    "build",
    "build_timeout",
    "shutdown_delay",
    "readiness_probe",
    "liveness_probe",
    "canary",
    "env_file",
    "log_max_size",
    "log_retain",
    "log_compress",
];

/// Keys that are parsed, checked and resolved into the plan, but that the supervisor does
/// not act on yet: each use gets a warning. Remove an entry when its feature lands.
pub const PARSED_NOT_ENFORCED: &[&str] = &[];

/// PM2 keys hotrun accepts and ignores (with a warning).
pub const NOT_SUPPORTED: &[&str] = &[
    "name_prefix",
    "filter_env",
    "namespace",
    "install_url",
    "disable_logs",
    "log_type",
    "pid_file",
    "source_map_support",
    "disable_source_map_support",
    "vizion",
    "autostart",
    "execute_command",
    "force",
    "append_env_to_name",
    "post_update",
    "trace",
    "disable_trace",
    "v8",
    "event_loop_inspector",
    "deep_monitoring",
    "pmx",
    "automation",
    "treekill",
    "username",
    "uid",
    "gid",
    "windowsHide",
    "kill_retry_time",
    "write",
    "io",
];

/// PM2's alternative names: (alias, canonical).
pub const ALIASES: &[(&str, &str)] = &[
    ("exec", "script"),
    ("cmd", "script"),
    ("command", "script"),
    ("exec_interpreter", "interpreter"),
    ("node_args", "interpreter_args"),
    ("out", "out_file"),
    ("output", "out_file"),
    ("out_log", "out_file"),
    ("error", "error_file"),
    ("err", "error_file"),
    ("err_file", "error_file"),
    ("err_log", "error_file"),
    ("log", "log_file"),
    ("pid", "pid_file"),
    ("cron", "cron_restart"),
    ("user", "uid"),
    ("combine_logs", "merge_logs"),
];

/// Top-level keys of the file besides the apps.
pub const TOP_LEVEL: &[&str] = &["apps", "pm2"];
/// Top-level sections PM2 honours and hotrun ignores.
pub const TOP_LEVEL_NOT_SUPPORTED: &[&str] = &["deploy", "static"];

/// What a key of an app object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClass {
    /// Implemented; the canonical name. (May also be in [`PARSED_NOT_ENFORCED`].)
    Implemented(&'static str),
    /// A PM2 key hotrun ignores; the canonical name.
    NotSupported(&'static str),
    /// `env_NAME`: the profile NAME.
    Profile(String),
    /// Not a PM2 key; the nearest known name, if one is close.
    Unknown(Option<&'static str>),
}

fn canonical(key: &str) -> Option<&'static str> {
    let alias = ALIASES.iter().find(|(a, _)| *a == key).map(|(_, c)| *c);
    let key = alias.unwrap_or(key);
    IMPLEMENTED
        .iter()
        .chain(NOT_SUPPORTED)
        .find(|k| **k == key)
        .copied()
}

/// `maxMemoryRestart` -> `max_memory_restart`; `None` when `key` is not camelCase.
fn camel_to_snake(key: &str) -> Option<String> {
    if !key.starts_with(|c: char| c.is_ascii_lowercase())
        || !key.contains(|c: char| c.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Classifies an app key as written.
pub fn classify(key: &str) -> KeyClass {
    let canon = canonical(key).or_else(|| camel_to_snake(key).and_then(|s| canonical(&s)));
    match canon {
        Some(c) if IMPLEMENTED.contains(&c) => KeyClass::Implemented(c),
        Some(c) => KeyClass::NotSupported(c),
        None => match key.strip_prefix("env_") {
            Some(profile) if !profile.is_empty() && !profile.contains(char::is_whitespace) => {
                KeyClass::Profile(profile.to_string())
            }
            _ => KeyClass::Unknown(suggest(key, &all_names())),
        },
    }
}

fn all_names() -> Vec<&'static str> {
    IMPLEMENTED
        .iter()
        .chain(NOT_SUPPORTED)
        .copied()
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .collect()
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate nearest to `key` (compared in snake_case, ignoring case), if it is within
/// a third of the key's length (at most 3 edits, at least 1).
pub fn suggest(key: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let norm = camel_to_snake(key)
        .unwrap_or_else(|| key.to_string())
        .to_ascii_lowercase();
    let limit = (norm.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&norm, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_aliases_and_camel_case() {
        assert_eq!(classify("instances"), KeyClass::Implemented("instances"));
        assert_eq!(
            classify("maxMemoryRestart"),
            KeyClass::Implemented("max_memory_restart")
        );
        assert_eq!(
            classify("killTimeout"),
            KeyClass::Implemented("kill_timeout")
        );
        assert_eq!(
            classify("node_args"),
            KeyClass::Implemented("interpreter_args")
        );
        assert_eq!(
            classify("nodeArgs"),
            KeyClass::Implemented("interpreter_args")
        );
        assert_eq!(
            classify("interpreterArgs"),
            KeyClass::Implemented("interpreter_args")
        );
        assert_eq!(
            classify("exec_interpreter"),
            KeyClass::Implemented("interpreter")
        );
        assert_eq!(
            classify("combine_logs"),
            KeyClass::Implemented("merge_logs")
        );
        assert_eq!(classify("errFile"), KeyClass::Implemented("error_file"));
        assert_eq!(classify("output"), KeyClass::Implemented("out_file"));
        assert_eq!(
            classify("expBackoffRestartDelay"),
            KeyClass::Implemented("exp_backoff_restart_delay")
        );
        assert_eq!(
            classify("autorestart"),
            KeyClass::Implemented("autorestart")
        );
        assert_eq!(classify("cron"), KeyClass::Implemented("cron_restart"));
        assert_eq!(classify("user"), KeyClass::NotSupported("uid"));
        assert_eq!(
            classify("windowsHide"),
            KeyClass::NotSupported("windowsHide")
        );
        assert_eq!(classify("pid"), KeyClass::NotSupported("pid_file"));
        assert_eq!(
            classify("env_production"),
            KeyClass::Profile("production".into())
        );
        for k in PARSED_NOT_ENFORCED {
            assert!(IMPLEMENTED.contains(k));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("instnaces", "instances"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(classify("instnaces"), KeyClass::Unknown(Some("instances")));
        assert_eq!(classify("scirpt"), KeyClass::Unknown(Some("script")));
        assert_eq!(
            classify("max_memory_restrat"),
            KeyClass::Unknown(Some("max_memory_restart"))
        );
        assert_eq!(
            classify("waitReadyy"),
            KeyClass::Unknown(Some("wait_ready"))
        );
        assert_eq!(classify("Instances"), KeyClass::Unknown(Some("instances")));
        assert_eq!(classify("banana"), KeyClass::Unknown(None));
        assert_eq!(classify("xyz"), KeyClass::Unknown(None));
        assert_eq!(suggest("app", TOP_LEVEL), Some("apps"));
    }
}
