//! Reading the ecosystem file into a JSON value.
//!
//! `.yml` and `.yaml` are YAML (see `yaml`). `.json`, `.json5` (and any other name) are
//! JSON5, parsed by the json5 crate; PM2 evaluates a `.json` file as a JavaScript
//! expression, so one that is not JSON5 either (a template literal, `process.env.X`, ...)
//! is evaluated the same way by node when node is there. `.js`,
//! `.cjs` and `.mjs` files that are plain literals (`module.exports = {...}`,
//! `export default [...]`, `module.exports.apps = [...]`) are JSON5 too once the
//! assignment prefix and the final `;` are blanked out with spaces: line:column stay those
//! of the original file. Any other JavaScript is evaluated with node (see `node_eval`).

use std::fs;
use std::path::Path;

use json5::ErrorCode;
use serde_json::Value;

use super::error::ConfigError;
use super::position::Located;
use super::{locate, node_eval, yaml};

/// The file's content as a value, and where its positions come from.
#[derive(Debug, Clone)]
pub struct Source {
    pub value: Value,
    /// `None` when node evaluated the file: positions are then unknown.
    pub text: Option<Located>,
}

/// How a JS file hands over its literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `module.exports =`
    ModuleExports,
    /// `module.exports.apps =` or `exports.apps =` (the literal is the apps array)
    AppsAssign,
    /// `export default`
    ExportDefault,
}

/// Reads and parses the file at `path` (`display` is how messages name it).
pub fn read(path: &Path, display: &str, notes: &mut Vec<String>) -> Result<Source, ConfigError> {
    let text = read_text(path, display)?;
    if let Some((line, col)) = too_deep(&text) {
        return Err(ConfigError::invalid(format!(
            "{display}:{line}:{col}: nested more than {MAX_DEPTH} levels deep"
        ))
        .with_help("an ecosystem file is a few levels deep; is this the right file?"));
    }

    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "yml" | "yaml" => read_yaml(display, &text),
        "js" | "cjs" | "mjs" => read_js(path, display, &text, ext == "mjs", notes),
        _ => read_json5(path, display, text, ext.starts_with("json"), notes),
    }
}

/// The file's text: it must be a file, and UTF-8 (a byte-order mark becomes a space).
fn read_text(path: &Path, display: &str) -> Result<String, ConfigError> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConfigError::not_found(format!("{display}: no such file"))
            .with_help("check the path given to --config"),
        _ => ConfigError::not_found(format!("{display}: cannot read: {e}")),
    })?;
    if meta.is_dir() {
        let help = match locate::find_in(path) {
            Some(found) => format!(
                "did you mean --config {}?",
                Path::new(display)
                    .join(found.file_name().unwrap_or_default())
                    .display()
            ),
            None => "pass the ecosystem file itself, not its folder".to_string(),
        };
        return Err(ConfigError::not_found(format!(
            "{display}: is a folder, not an ecosystem file"
        ))
        .with_help(help));
    }
    let bytes = fs::read(path)
        .map_err(|e| ConfigError::not_found(format!("{display}: cannot read: {e}")))?;
    let mut text = String::from_utf8(bytes).map_err(|e| not_utf8(display, e))?;
    if text.starts_with('\u{feff}') {
        // A byte-order mark: one char, replaced by one space so columns do not move.
        text.replace_range(..'\u{feff}'.len_utf8(), " ");
    }
    Ok(text)
}

/// `file:line:col: not valid UTF-8` at the first bad byte.
fn not_utf8(display: &str, e: std::string::FromUtf8Error) -> ConfigError {
    let valid_up_to = e.utf8_error().valid_up_to();
    let bytes = e.into_bytes();
    let prefix = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or("");
    let line = prefix.matches('\n').count() + 1;
    let col = prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ConfigError::invalid(format!(
        "{display}:{line}:{col}: not valid UTF-8 (byte 0x{:02x})",
        bytes[valid_up_to]
    ))
    .with_help("ecosystem files must be UTF-8 text; save the file as UTF-8")
}

/// A YAML file: a document that is not empty.
fn read_yaml(display: &str, text: &str) -> Result<Source, ConfigError> {
    match yaml::parse(text) {
        Ok((Value::Null, _)) => Err(ConfigError::invalid(format!(
            "{display}: the YAML document is empty: there is no app to run"
        ))
        .with_help("write apps:\n  - name: web\n    script: server.js")),
        Ok((value, index)) => Ok(Source {
            value,
            text: Some(Located::Yaml(index)),
        }),
        Err(e) => {
            let at = match e.position {
                Some((line, col)) => format!("{display}:{line}:{col}"),
                None => display.to_string(),
            };
            Err(ConfigError::invalid(format!(
                "{at}: YAML syntax error: {}",
                e.message
            )))
        }
    }
}

/// A JSON5 file (any name but YAML's and JavaScript's). PM2 evaluates JSON as a
/// JavaScript expression: so does hotrun, with node, for a `.json*` file (`json_like`)
/// that is not JSON5. If node fails too (or is not there), the JSON5 error is the
/// clearer one.
fn read_json5(
    path: &Path,
    display: &str,
    mut text: String,
    json_like: bool,
    notes: &mut Vec<String>,
) -> Result<Source, ConfigError> {
    let e = match parse(&mut text, false) {
        Ok(value) => {
            return Ok(Source {
                value,
                text: Some(Located::Json5(text)),
            })
        }
        Err(e) => e,
    };
    let err = ConfigError::invalid(format!("{}: syntax error: {}", at(display, &e), what(&e)));
    match json_like
        .then(|| node_eval::evaluate_expression(path))
        .flatten()
    {
        Some(value) => {
            notes.push(format!(
                "{display} is not JSON5; evaluated as a JavaScript expression with node, as PM2 does"
            ));
            Ok(Source { value, text: None })
        }
        None => Err(err),
    }
}

/// A JavaScript file: JSON5 once its prefix is blanked out, else evaluated with node.
fn read_js(
    path: &Path,
    display: &str,
    text: &str,
    mjs: bool,
    notes: &mut Vec<String>,
) -> Result<Source, ConfigError> {
    let (mut blanked, prefix) = blank_prefix(text);
    let err = match parse(&mut blanked, true) {
        // (`module.exports.apps = [...]` yields the apps array: the bare-array shape.)
        Ok(value) => {
            return Ok(Source {
                value,
                text: Some(Located::Json5(blanked)),
            })
        }
        Err(e) => e,
    };
    let esm = mjs || prefix == Some(Prefix::ExportDefault);
    match node_eval::evaluate(path, display, esm)? {
        Some(value) => {
            notes.push(format!("{display} uses JavaScript; evaluated with node"));
            Ok(Source { value, text: None })
        }
        None => Err(ConfigError::invalid(format!(
            "{}: JavaScript that is not a plain literal ({}) needs node on PATH to evaluate; node was not found",
            at(display, &err),
            what(&err)
        ))
        .with_help(format!(
            "install Node.js (or set HOTRUN_NODE to its path), or write the file as a plain literal: \
             module.exports = {{ apps: [ ... ] }}{}",
            match std::env::var("HOTRUN_NODE") {
                Ok(n) if !n.is_empty() => format!(" (HOTRUN_NODE is {n})"),
                _ => String::new(),
            }
        ))),
    }
}

/// The deepest nesting of arrays and objects accepted (parsing is recursive).
pub const MAX_DEPTH: usize = 100;

/// 1-based line:column of the first bracket that nests deeper than [`MAX_DEPTH`].
/// A guard, not a parser: it only skips strings and comments while counting brackets.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1, 0);
    let mut chars = text.chars().peekable();
    let mut in_str: Option<char> = None;
    let mut comment: Option<bool> = None; // Some(true) = block comment
    let mut prev = '\0';
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
        match (in_str, comment) {
            (Some(q), _) => {
                if c == '\\' {
                    if chars.peek().is_some_and(|n| *n != '\n') {
                        chars.next();
                        col += 1;
                    }
                } else if c == q || c == '\n' {
                    in_str = None;
                }
            }
            (None, Some(block)) => {
                if (!block && c == '\n') || (block && prev == '*' && c == '/') {
                    comment = None;
                }
            }
            (None, None) => match c {
                '"' | '\'' | '`' => in_str = Some(c),
                '/' if chars.peek() == Some(&'/') => comment = Some(false),
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    col += 1;
                    comment = Some(true);
                    prev = '\0';
                    continue;
                }
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some((line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    None
}

/// `file:line:col` of a json5 error (just `file` when it has no position).
fn at(display: &str, e: &json5::Error) -> String {
    match e.position() {
        Some(p) => format!("{display}:{}:{}", p.line + 1, p.column + 1),
        None => display.to_string(),
    }
}

/// A json5 error without its " at line N column M" suffix.
fn what(e: &json5::Error) -> String {
    if let Some(code) = e.code() {
        return code.to_string();
    }
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parses JSON5 into a value. With `allow_semicolon`, one `;` right after the literal is
/// blanked out (in `text`) and the parse retried.
fn parse(text: &mut String, allow_semicolon: bool) -> Result<Value, json5::Error> {
    match json5::from_str::<Value>(text) {
        Err(e) if allow_semicolon && e.code() == Some(ErrorCode::TrailingCharacters) => {
            let Some(p) = e.position() else { return Err(e) };
            match byte_offset(text, p.line, p.column) {
                Some(off) if text[off..].starts_with(';') => {
                    text.replace_range(off..off + 1, " ");
                    json5::from_str::<Value>(text)
                }
                _ => Err(e),
            }
        }
        other => other,
    }
}

/// The byte offset of a json5 position (0-based line and char column), counting lines as
/// json5 does.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let (mut l, mut c) = (0, 0);
    let mut chars = text.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if l == line && c == column {
            return Some(i);
        }
        if json5::char::is_json5_line_terminator(ch) {
            if ch == '\r' && chars.peek().map(|(_, n)| *n) == Some('\n') {
                chars.next();
            }
            l += 1;
            c = 0;
        } else {
            c += 1;
        }
    }
    None
}

/// Blanks out (with spaces) what precedes the literal in a JS file: a `#!` line, a
/// `'use strict'` directive, and the `module.exports =` / `export default` prefix.
/// Comments are left in place (JSON5 reads them).
pub fn blank_prefix(text: &str) -> (String, Option<Prefix>) {
    let b = text.as_bytes();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    if text.starts_with("#!") {
        let end = text.find('\n').unwrap_or(text.len());
        ranges.push((0, end));
        i = end;
    }
    let skip = |mut i: usize| -> usize {
        loop {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if b[i..].starts_with(b"//") {
                i = text[i..].find('\n').map_or(b.len(), |n| i + n);
            } else if b[i..].starts_with(b"/*") {
                i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            } else {
                return i;
            }
        }
    };
    i = skip(i);
    for directive in ["'use strict'", "\"use strict\""] {
        if text[i..].starts_with(directive) {
            let mut end = i + directive.len();
            let after = skip_ws(b, end);
            if b.get(after) == Some(&b';') {
                end = after + 1;
            }
            ranges.push((i, end));
            i = skip(end);
        }
    }
    let patterns: &[(&[&str], Prefix)] = &[
        (
            &["module", ".", "exports", ".", "apps", "="],
            Prefix::AppsAssign,
        ),
        (&["module", ".", "exports", "="], Prefix::ModuleExports),
        (&["exports", ".", "apps", "="], Prefix::AppsAssign),
        (&["export", "default"], Prefix::ExportDefault),
    ];
    let mut found = None;
    for (tokens, kind) in patterns {
        if let Some(end) = match_tokens(text, i, tokens) {
            ranges.push((i, end));
            found = Some(*kind);
            break;
        }
    }
    let mut out = String::with_capacity(text.len());
    for (idx, ch) in text.char_indices() {
        if ranges.iter().any(|(s, e)| idx >= *s && idx < *e) && ch != '\n' && ch != '\r' {
            out.push(' ');
        } else {
            out.push(ch);
        }
    }
    (out, found)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Matches `tokens` at `i` (whitespace allowed between them); the end offset.
fn match_tokens(text: &str, mut i: usize, tokens: &[&str]) -> Option<usize> {
    let b = text.as_bytes();
    for (n, tok) in tokens.iter().enumerate() {
        if n > 0 {
            i = skip_ws(b, i);
        }
        if !text[i..].starts_with(tok) {
            return None;
        }
        i += tok.len();
        let word = tok.bytes().all(|c| c.is_ascii_alphanumeric());
        if word
            && b.get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$')
        {
            return None;
        }
        if *tok == "=" && b.get(i) == Some(&b'=') {
            return None;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_the_prefix_keeping_columns() {
        let src = "// c\nmodule.exports = {\n  a: 1,\n};\n";
        let (out, p) = blank_prefix(src);
        assert_eq!(p, Some(Prefix::ModuleExports));
        assert_eq!(out, "// c\n                 {\n  a: 1,\n};\n");
        let (out, p) = blank_prefix("'use strict';\nexport default [1]");
        assert_eq!(p, Some(Prefix::ExportDefault));
        assert_eq!(out, "             \n               [1]");
        let (_, p) = blank_prefix("exports.apps = []");
        assert_eq!(p, Some(Prefix::AppsAssign));
        let (out, p) = blank_prefix("const x = 1");
        assert_eq!(p, None);
        assert_eq!(out, "const x = 1");
        let (_, p) = blank_prefix("module.exportsX = {}");
        assert_eq!(p, None);
    }

    #[test]
    fn trailing_semicolon_is_blanked() {
        let (mut t, _) = blank_prefix("module.exports = { a: 'x' }; // done\n");
        let v = parse(&mut t, true).unwrap();
        assert_eq!(v, serde_json::json!({"a": "x"}));
        let (mut t, _) = blank_prefix("module.exports = { a: 1 }; foo();");
        assert!(parse(&mut t, true).is_err());
        let mut t = String::from("{ a: 1 };");
        assert!(parse(&mut t, false).is_err());
    }

    #[test]
    fn nesting_guard() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(too_deep(&deep), Some((1, MAX_DEPTH + 1)));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(too_deep(&ok), None);
        let quoted = format!(
            "{{ a: '{}', b: \"\\\"[[\" }} // [[[[\n/* {{{{ */",
            "[".repeat(500)
        );
        assert_eq!(too_deep(&quoted), None);
    }

    #[test]
    fn byte_offsets() {
        assert_eq!(byte_offset("ab\ncé;", 1, 2), Some(6));
        assert_eq!(byte_offset("a\r\nb", 1, 0), Some(3));
        assert_eq!(byte_offset("a", 3, 0), None);
    }
}
