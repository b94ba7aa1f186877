//! `ConfigError`: every way loading an ecosystem file can fail, with the exit code each maps
//! to. The first line of the Display is the whole diagnosis (`file:line:col: message`); an
//! optional second line starts with `help: ` and says what to do next.

use std::fmt;

use crate::exit;

/// Which family an error belongs to; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No ecosystem file found, or the named one does not exist / cannot be read.
    NotFound,
    /// The file was read but is invalid: syntax, types, values, profiles, apps.
    Invalid,
    /// A JavaScript file could not be evaluated with node.
    Eval,
}

/// A configuration error, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ErrorKind,
    /// One line, already carrying `file:line:col: ` (or `file: `) where it applies.
    pub message: String,
    /// What to do about it (printed as `help: ...` on the next line).
    pub help: Option<String>,
}

impl ConfigError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            message: message.into(),
            help: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn eval(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Eval, message)
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The process exit code for this error (see `crate::exit`).
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::NotFound => exit::CONFIG_NOT_FOUND,
            ErrorKind::Invalid => exit::CONFIG_INVALID,
            ErrorKind::Eval => exit::CONFIG_EVAL,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_help_on_second_line() {
        let e = ConfigError::invalid("a.js:1:2: bad").with_help("fix it");
        assert_eq!(e.to_string(), "a.js:1:2: bad\nhelp: fix it");
        assert_eq!(e.exit_code(), exit::CONFIG_INVALID);
        assert_eq!(
            ConfigError::not_found("x").exit_code(),
            exit::CONFIG_NOT_FOUND
        );
        assert_eq!(ConfigError::eval("x").exit_code(), exit::CONFIG_EVAL);
    }
}
