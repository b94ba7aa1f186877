//! One app's environment from its keys, lowest layer first: `env_file` (hotrun's key),
//! `env`, `deploy.NAME.env`, the selected `env_NAME`; then PORT from `port` (so that
//! `port` and the PORT the app sees always agree, as the plan promises). How the layers
//! merge and how an env file reads are `env`'s part.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::app::Ctx;
use super::env::{self, Layer};
use super::error::ConfigError;
use super::fields::Fields;
use super::locate::absolute;
use super::position::{Seg, Target};
use super::units;

/// The app's environment; `selected` is the `env_NAME` profile `--env` picks (its name,
/// its key as written, its value).
pub fn env_of(
    ctx: &Ctx,
    f: &Fields,
    selected: Option<&(String, &str, &Value)>,
    cwd: &Path,
    port: Option<u16>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let from_files = env_files(ctx, f, cwd)?;
    let layers = layers_of(ctx, f, selected)?;
    let mut env = env::merge(from_files, &layers, ctx.origin, warnings)?;
    if let Some(p) = port {
        let port_key = f.get("port").map_or("port", |(k, _)| k);
        if let Some(old) = env
            .insert("PORT".to_string(), p.to_string())
            .filter(|old| *old != p.to_string())
        {
            warnings.push(f.msg(
                port_key,
                Target::Value,
                &format!(": {p} overrides PORT={old} from env"),
            ));
        }
    }
    Ok(env)
}

/// The objects of `env`, `deploy.NAME.env` and the selected `env_NAME`, lowest first.
fn layers_of<'a>(
    ctx: &Ctx<'a>,
    f: &Fields<'a>,
    selected: Option<&(String, &'a str, &'a Value)>,
) -> Result<Vec<Layer<'a>>, ConfigError> {
    let layer = |(k, v): (&'a str, &'a Value)| -> Result<Layer<'a>, ConfigError> {
        let map = v
            .as_object()
            .ok_or_else(|| f.bad(k, v, "an object of variable names and values"))?;
        Ok(Layer {
            map,
            path: f.path_of(k),
        })
    };
    let mut layers = Vec::new();
    if let Some(written) = f.get("env") {
        layers.push(layer(written)?);
    }
    if let Some((map, p)) = &ctx.deploy_env {
        layers.push(Layer {
            map,
            path: p.clone(),
        });
    }
    if let Some((_, k, v)) = selected {
        layers.push(layer((k, v))?);
    }
    Ok(layers)
}

/// The variables of the app's `env_file` entries, in order (later files win).
/// A path with a leading `?` is optional: skipped when the file does not exist.
fn env_files(ctx: &Ctx, f: &Fields, cwd: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    const E: &str = "a file path or an array of file paths (a leading ? marks an optional file)";
    let mut vars = BTreeMap::new();
    let Some((k, v)) = f.get("env_file") else {
        return Ok(vars);
    };
    let entries: Vec<(Vec<Seg>, &str)> = match v {
        Value::String(s) => vec![(f.path_of(k), s.as_str())],
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let mut p = f.path_of(k);
                p.push(Seg::Index(i));
                match item {
                    Value::String(s) => out.push((p, s.as_str())),
                    other => {
                        return Err(ConfigError::invalid(ctx.origin.msg(
                            &p,
                            Target::Value,
                            Some(&format!("{k}[{i}]")),
                            &format!(" must be a file path (got {})", units::show(other)),
                        )))
                    }
                }
            }
            out
        }
        other => return Err(f.bad(k, other, E)),
    };
    for (p, written) in entries {
        let (rel, optional) = env::env_file_spec(written);
        if rel.trim().is_empty() {
            return Err(f.bad(k, v, E));
        }
        let file = absolute(cwd, Path::new(rel));
        let fail = |detail: String| {
            ConfigError::invalid(ctx.origin.msg(&p, Target::Value, Some(k), &detail))
        };
        match env::read_env_file(&file) {
            Ok(pairs) => vars.extend(pairs),
            Err(env::EnvFileError::Missing) if optional => {}
            Err(env::EnvFileError::Missing) => {
                return Err(fail(format!(": {}: no such file", file.display())).with_help(
                    format!(
                        "env_file is relative to the app's cwd ({}); write '?{rel}' for a file that may be missing",
                        cwd.display()
                    ),
                ))
            }
            Err(env::EnvFileError::Unreadable(e)) => {
                return Err(fail(format!(": {}: cannot read: {e}", file.display())))
            }
            Err(env::EnvFileError::Syntax(line, e)) => {
                let at = match line {
                    Some(l) => format!("{}:{l}", file.display()),
                    None => file.display().to_string(),
                };
                return Err(fail(format!(": {at}: {e}"))
                    .with_help("env files use dotenv syntax: KEY=value lines, # comments, quotes, an optional export prefix"));
            }
        }
    }
    Ok(vars)
}
