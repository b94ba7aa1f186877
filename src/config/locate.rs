//! Finding the ecosystem file: `--config` as given, or the first of PM2's usual names in
//! the working folder; plus the path helpers (lexical normalisation, display form).

use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;

/// The names looked for, in order, when no `--config` is given.
pub const CANDIDATES: &[&str] = &[
    "ecosystem.config.js",
    "ecosystem.config.cjs",
    "ecosystem.config.json",
    "ecosystem.json",
    "ecosystem.config.json5",
    "ecosystem.config.yml",
    "ecosystem.config.yaml",
];

/// The first candidate that exists as a file in `dir`.
pub fn find_in(dir: &Path) -> Option<PathBuf> {
    CANDIDATES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Discovery in `cwd`; the error lists the names and suggests `--config`.
pub fn discover(cwd: &Path) -> Result<PathBuf, ConfigError> {
    find_in(cwd).ok_or_else(|| {
        ConfigError::not_found(format!(
            "no ecosystem file in {}: looked for {}",
            cwd.display(),
            CANDIDATES.join(", ")
        ))
        .with_help("pass the file with --config FILE, or run hotrun in the folder that has it")
    })
}

/// `path` made absolute against `base`, with `.` and `..` removed lexically (symlinks kept).
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// How messages show a path: relative to `cwd` when under it, else absolute.
pub fn display(path: &Path, cwd: &Path) -> String {
    match path.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_displays() {
        let base = Path::new("/srv/app");
        assert_eq!(
            absolute(base, Path::new("./a/../b.js")),
            PathBuf::from("/srv/app/b.js")
        );
        assert_eq!(absolute(base, Path::new("/x/./y")), PathBuf::from("/x/y"));
        assert_eq!(display(Path::new("/srv/app/conf/e.js"), base), "conf/e.js");
        assert_eq!(display(Path::new("/etc/e.js"), base), "/etc/e.js");
    }

    #[test]
    fn discovery_order_and_error() {
        let dir = std::env::temp_dir().join(format!("hotrun-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = discover(&dir).unwrap_err();
        assert!(err
            .message
            .contains("ecosystem.config.js, ecosystem.config.cjs"));
        assert_eq!(err.exit_code(), crate::exit::CONFIG_NOT_FOUND);
        std::fs::write(dir.join("ecosystem.json"), "{}").unwrap();
        std::fs::write(dir.join("ecosystem.config.json5"), "{}").unwrap();
        assert_eq!(discover(&dir).unwrap(), dir.join("ecosystem.json"));
        std::fs::write(dir.join("ecosystem.config.cjs"), "{}").unwrap();
        assert_eq!(discover(&dir).unwrap(), dir.join("ecosystem.config.cjs"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
