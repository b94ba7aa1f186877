//! The whole file -> [`Plan`]: find the apps (PM2's shapes `{apps: [...]}`, `{pm2: [...]}`,
//! a bare array, one app object), resolve each, then the checks across apps: duplicate
//! names, `--only`, and the `--env` profile.

use std::path::Path;

use serde_json::{Map, Value};

use super::app::{resolve_app, Ctx, Resolved};
use super::error::ConfigError;
use super::position::{Origin, Seg, Target};
use super::schema::{self, KeyClass};
use super::units::show;
use crate::plan::Plan;

/// What the file level needs besides the parsed value.
pub struct Input<'a> {
    pub origin: &'a Origin,
    /// Absolute path of the config file.
    pub config: &'a Path,
    pub profile: Option<&'a str>,
    pub only: &'a [String],
    pub cpus: u32,
}

/// An app object and its path in the file.
type AppEntry<'a> = (Vec<Seg>, &'a Map<String, Value>);

/// Where the list of apps is, and its items (not checked yet) with their paths.
type Listed<'a> = (Vec<Seg>, Vec<(Vec<Seg>, &'a Value)>);

/// What a file that exports no apps is told.
const SHAPE: &str =
    "expected module.exports = { apps: [ { script: '...' } ] }, an array of apps, or one app";

/// The app objects of the file, each with its path.
fn apps_of<'a>(
    origin: &Origin,
    root: &'a Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<AppEntry<'a>>, ConfigError> {
    let (list_path, list) = match root {
        Value::Array(items) => (Vec::new(), indexed(&[], items)),
        Value::Object(map) => object_apps(origin, root, map, warnings)?,
        v => return Err(exports(origin, &show(v))),
    };
    if list.is_empty() {
        return Err(ConfigError::invalid(origin.msg(
            &list_path,
            Target::Value,
            Some("apps"),
            " is empty: there is no app to run",
        ))
        .with_help("add an app: apps: [ { name: 'web', script: 'server.js' } ]"));
    }
    list.into_iter()
        .map(|(p, v)| match v {
            Value::Object(m) => Ok((p, m)),
            other => Err(ConfigError::invalid(origin.msg(
                &p,
                Target::Value,
                None,
                &format!(
                    " must be an app object such as {{ script: 'server.js' }} (got {})",
                    show(other)
                ),
            ))),
        })
        .collect()
}

/// The items of an array of apps at `prefix`, each with its path.
fn indexed<'a>(prefix: &[Seg], items: &'a [Value]) -> Vec<(Vec<Seg>, &'a Value)> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut p = prefix.to_vec();
            p.push(Seg::Index(i));
            (p, v)
        })
        .collect()
}

/// The apps of a file that exports an object: under `apps` (or `pm2`), with a warning for
/// each other top-level key, else the object itself when it has app keys.
fn object_apps<'a>(
    origin: &Origin,
    root: &'a Value,
    map: &'a Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<Listed<'a>, ConfigError> {
    match ["apps", "pm2"].into_iter().find(|k| map.contains_key(*k)) {
        Some(key) => {
            warn_top_level(origin, map, key, warnings);
            let p = vec![Seg::Key(key.to_string())];
            match &map[key] {
                Value::Array(items) => Ok((p.clone(), indexed(&p, items))),
                v @ Value::Object(_) => Ok((p.clone(), vec![(p, v)])),
                v => Err(ConfigError::invalid(origin.msg(
                    &p,
                    Target::Value,
                    Some(key),
                    &format!(" must be an array of apps (got {})", show(v)),
                ))),
            }
        }
        None if map
            .keys()
            .any(|k| !matches!(schema::classify(k), KeyClass::Unknown(_))) =>
        {
            Ok((Vec::new(), vec![(Vec::new(), root)]))
        }
        None if map.is_empty() => Err(exports(origin, "an empty object")),
        None => Err(exports(origin, "an object without apps")),
    }
}

/// Warns about the top-level keys besides `apps_key`, in file order.
fn warn_top_level(
    origin: &Origin,
    map: &Map<String, Value>,
    apps_key: &str,
    warnings: &mut Vec<String>,
) {
    let mut others: Vec<&String> = map.keys().filter(|k| k.as_str() != apps_key).collect();
    others.sort_by_cached_key(|k| origin.position(&[Seg::Key((*k).clone())], Target::Key));
    for k in others {
        let detail = if k == "deploy" {
            ": PM2's deploy section; hotrun does not deploy, it only uses deploy.NAME.env with --env NAME".to_string()
        } else if schema::TOP_LEVEL_NOT_SUPPORTED.contains(&k.as_str()) {
            ": known PM2 section, not supported by hotrun; ignored".to_string()
        } else if let Some(s) = schema::suggest(k, schema::TOP_LEVEL) {
            format!(": unknown top-level key; did you mean {s}?")
        } else {
            ": unknown top-level key; ignored".to_string()
        };
        warnings.push(origin.msg(&[Seg::Key(k.clone())], Target::Key, Some(k), &detail));
    }
}

/// `the file exports WHAT; SHAPE` at the top of the file.
fn exports(origin: &Origin, what: &str) -> ConfigError {
    ConfigError::invalid(origin.msg(
        &[],
        Target::Value,
        Some("the file"),
        &format!(" exports {what}; {SHAPE}"),
    ))
}

/// `deploy.<profile>.env` and its path.
type DeployEnv<'a> = (&'a Map<String, Value>, Vec<Seg>);

/// `deploy.<profile>.env` of the file, when the file has apps (`{apps: ...}` or
/// `{pm2: ...}`), a `deploy` section, and `--env` names one of its targets with an `env`.
/// PM2 layers it over the apps' `env` and under `env_<profile>`.
fn deploy_env<'a>(
    origin: &Origin,
    root: &'a Value,
    profile: Option<&str>,
) -> Result<Option<DeployEnv<'a>>, ConfigError> {
    let (Some(profile), Value::Object(top)) = (profile, root) else {
        return Ok(None);
    };
    if !top.contains_key("apps") && !top.contains_key("pm2") {
        return Ok(None);
    }
    let Some(Value::Object(deploy)) = top.get("deploy") else {
        return Ok(None);
    };
    let Some(target) = deploy.get(profile) else {
        return Ok(None);
    };
    let target_path = vec![Seg::Key("deploy".into()), Seg::Key(profile.to_string())];
    let Value::Object(target) = target else {
        return Err(ConfigError::invalid(origin.msg(
            &target_path,
            Target::Value,
            Some(&format!("deploy.{profile}")),
            &format!(" must be an object (got {})", show(target)),
        )));
    };
    let mut env_path = target_path;
    env_path.push(Seg::Key("env".into()));
    match target.get("env") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(env)) => Ok(Some((env, env_path))),
        Some(other) => Err(ConfigError::invalid(origin.msg(
            &env_path,
            Target::Value,
            Some(&format!("deploy.{profile}.env")),
            &format!(
                " must be an object of variable names and values (got {})",
                show(other)
            ),
        ))),
    }
}

/// Resolves the parsed file into the plan.
pub fn resolve(
    input: &Input,
    root: &Value,
    warnings: &mut Vec<String>,
) -> Result<Plan, ConfigError> {
    let origin = input.origin;
    let config_dir = input.config.parent().unwrap_or(Path::new("/"));
    let ctx = Ctx {
        origin,
        config_dir,
        profile: input.profile,
        cpus: input.cpus,
        deploy_env: deploy_env(origin, root, input.profile)?,
    };
    let mut resolved = Vec::new();
    for (path, obj) in apps_of(origin, root, warnings)? {
        resolved.push(resolve_app(&ctx, &path, obj, warnings)?);
    }
    unique_names(origin, &resolved)?;

    let mut all_profiles: Vec<String> = resolved
        .iter()
        .flat_map(|r| r.profiles.iter().map(|p| format!("env_{p}")))
        .collect();
    all_profiles.sort();
    all_profiles.dedup();

    if !input.only.is_empty() {
        let names: Vec<&str> = resolved.iter().map(|r| r.plan.name.as_str()).collect();
        for wanted in input.only {
            if !names.contains(&wanted.as_str()) {
                return Err(ConfigError::invalid(format!(
                    "{}: --only {wanted}: no app of that name (apps: {})",
                    origin.display,
                    names.join(", ")
                )));
            }
        }
        resolved.retain(|r| input.only.contains(&r.plan.name));
    }

    if let Some(profile) = input.profile {
        profile_check(input, profile, &resolved, &all_profiles, warnings)?;
    }

    Ok(Plan {
        config: input.config.to_path_buf(),
        profile: input.profile.map(str::to_string),
        apps: resolved.into_iter().map(|r| r.plan).collect(),
    })
}

/// Two apps of one name are an error at the second one's name.
fn unique_names(origin: &Origin, resolved: &[Resolved]) -> Result<(), ConfigError> {
    for (i, r) in resolved.iter().enumerate() {
        if let Some(first) = resolved[..i].iter().find(|o| o.plan.name == r.plan.name) {
            let also = match origin.position(&first.name_path, Target::Value) {
                Some((line, _)) => format!("line {line}"),
                None => super::position::path_display(&first.name_path),
            };
            return Err(ConfigError::invalid(origin.msg(
                &r.name_path,
                Target::Value,
                Some("name"),
                &format!(": duplicate app name '{}' (also at {also})", r.plan.name),
            ))
            .with_help("every app needs its own name: set name on one of them"));
        }
    }
    Ok(())
}

/// `--env PROFILE`: an error when no app (of those selected) defines it; a warning for
/// each app that does not.
fn profile_check(
    input: &Input,
    profile: &str,
    resolved: &[Resolved],
    all_profiles: &[String],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let origin = input.origin;
    if !resolved.iter().any(|r| r.has_profile) {
        let has = if all_profiles.is_empty() {
            "the file defines no env_* profile".to_string()
        } else {
            format!("profiles in the file: {}", all_profiles.join(", "))
        };
        let who = if input.only.is_empty() {
            "no app"
        } else {
            "no app selected by --only"
        };
        return Err(ConfigError::invalid(format!(
            "{}: --env {profile}: {who} defines env_{profile} ({has})",
            origin.display
        ))
        .with_help(format!(
            "add env_{profile}: {{ ... }} to the app, or choose one of the profiles listed"
        )));
    }
    for r in resolved.iter().filter(|r| !r.has_profile) {
        warnings.push(format!(
            "{}: app {} has no env_{profile}; it gets its env only",
            origin.display, r.plan.name
        ));
    }
    Ok(())
}
