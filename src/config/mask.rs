//! Hiding secret values when a plan is shown (`hotrun config` without `--show-secrets`).
//!
//! An env variable is secret when its name says so, compared case-insensitively:
//! - it contains PASSWORD, PASSWD, PASSPHRASE, SECRET, TOKEN, KEY, CREDENTIAL or PRIVATE
//!   anywhere (`DB_PASSWORD`, `apiKey`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`; also
//!   `MONKEY`: a false positive costs only a masked value);
//! - or one of its words (split at `_`, `-`, `.` and lower-to-upper camelCase changes) is
//!   PW, PWD or PASS (`PG_PW`, `DB_PWD`, `MYSQL_PWD`, `SMTP_PASS`, `dbPw`), except for the
//!   shell's working-folder variables `PWD` and `OLDPWD` themselves. Words only, so that
//!   `PWA_NAME`, `PASSPORT_STRATEGY` or `COMPASS_URL` stay visible.
//!
//! A secret's value becomes [`MASK`]. Besides, in any variable, a URL that carries a
//! password (`postgres://user:pw@host/db`) has that password masked.

use crate::plan::Plan;

/// What a secret value is replaced with.
pub const MASK: &str = "********";

const SUBSTRINGS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
];
const WORDS: &[&str] = &["PW", "PWD", "PASS"];
const NOT_SECRET: &[&str] = &["PWD", "OLDPWD"];

/// The words of a variable name, upper-cased: `dbPw_HOST` -> `DB`, `PW`, `HOST`.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_uppercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a variable of this name holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_uppercase();
    if NOT_SECRET.contains(&upper.as_str()) {
        return false;
    }
    SUBSTRINGS.iter().any(|s| upper.contains(s))
        || words(name).iter().any(|w| WORDS.contains(&w.as_str()))
}

/// `value` with the password of any `scheme://user:password@host` URL in it masked.
pub fn mask_url_passwords(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at && colon + 1 < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Masks the secret env values of every app of the plan (see the module docs).
pub fn mask_secrets(plan: &mut Plan) {
    for app in &mut plan.apps {
        for (k, v) in app.env.iter_mut() {
            if v.is_empty() {
                continue;
            }
            if is_secret_name(k) {
                *v = MASK.to_string();
            } else if v.contains("://") {
                *v = mask_url_passwords(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        let table: &[(&str, bool)] = &[
            ("PASSWORD", true),
            ("DB_PASSWORD", true),
            ("db_password", true),
            ("MYSQL_ROOT_PASSWD", true),
            ("GPG_PASSPHRASE", true),
            ("JWT_SECRET", true),
            ("clientSecret", true),
            ("GITHUB_TOKEN", true),
            ("accessToken", true),
            ("API_KEY", true),
            ("apiKey", true),
            ("APIKEY", true),
            ("STRIPE_PUBLISHABLE_KEY", true),
            ("AWS_ACCESS_KEY_ID", true),
            ("GOOGLE_APPLICATION_CREDENTIALS", true),
            ("PRIVATE_KEY_PATH", true),
            ("PW", true),
            ("PG_PW", true),
            ("DB_PW", true),
            ("dbPw", true),
            ("PW_HASH", true),
            ("DB_PWD", true),
            ("MYSQL_PWD", true),
            ("SMTP_PASS", true),
            ("redis-pass", true),
            ("PWD", false),
            ("pwd", false),
            ("OLDPWD", false),
            ("PWA_NAME", false),
            ("PASSPORT_STRATEGY", false),
            ("COMPASS_URL", false),
            ("BYPASS_CACHE", false),
            ("NODE_ENV", false),
            ("PORT", false),
            ("PG_USER", false),
            ("PG_HOST", false),
            ("HTTP_PORT", false),
            ("Redis_PORT", false),
            ("DATABASE_URL", false),
            ("NODE_APP_INSTANCE", false),
            ("", false),
        ];
        let wrong: Vec<String> = table
            .iter()
            .filter(|(name, want)| is_secret_name(name) != *want)
            .map(|(name, want)| format!("{name}: want {want}"))
            .collect();
        assert!(wrong.is_empty(), "{wrong:?}");
        assert_eq!(words("dbPw_HOST.x-y"), ["DB", "PW", "HOST", "X", "Y"]);
        assert_eq!(words("PG_PW"), ["PG", "PW"]);
    }

    #[test]
    fn url_passwords() {
        let table = [
            (
                "postgres://app:s3cret@db:5432/app",
                "postgres://app:********@db:5432/app",
            ),
            (
                "redis://:pw@localhost:6379",
                "redis://:********@localhost:6379",
            ),
            ("https://example.com/a@b:c", "https://example.com/a@b:c"),
            ("mongodb://user@host/db", "mongodb://user@host/db"),
            ("http://localhost:3000", "http://localhost:3000"),
            (
                "a=amqp://u:p@h b=amqp://v:q@i",
                "a=amqp://u:********@h b=amqp://v:********@i",
            ),
            ("no url", "no url"),
        ];
        for (input, want) in table {
            assert_eq!(mask_url_passwords(input), want, "{input}");
        }
    }

    #[test]
    fn masks_a_plan() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.js"), "").unwrap();
        std::fs::write(
            dir.path().join("e.json5"),
            "{ apps: [{ script: 'server.js', env: { PG_PW: 'pwtest', PWD: '/srv', EMPTY_TOKEN: '', DATABASE_URL: 'postgres://u:p@h/db', PORT: 3000 } }] }",
        )
        .unwrap();
        let opts = crate::config::LoadOptions {
            config: Some("e.json5".into()),
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        let mut plan = crate::config::load(&opts).unwrap().plan;
        mask_secrets(&mut plan);
        let want: BTreeMap<String, String> = [
            ("DATABASE_URL", "postgres://u:********@h/db"),
            ("EMPTY_TOKEN", ""),
            ("PG_PW", MASK),
            ("PORT", "3000"),
            ("PWD", "/srv"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(plan.apps[0].env, want);
    }
}
