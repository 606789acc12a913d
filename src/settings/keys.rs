//! Misspelt settings (SPEC §7): every key of the settings file and every
//! `HERD_<SECTION>__<KEY>` variable must name a setting, or the server does
//! not start. Silently ignored, `providr = "google"` would start an offline
//! herd. The known keys come from the setting structs themselves (their
//! defaults, serialised), so a new setting needs no list updated here.
//!
//! Variables with no `__` are not settings (`HERD_SECRET`, `HERD_CONFIG`,
//! `HERD_IMAGE` for compose ...) and are left alone.

use serde_json::{Map, Value};

/// A key that names no setting, with the closest one that does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownKey {
    /// A key of the settings file `file`.
    #[error("unknown setting {key} in {file}{}", did_you_mean(.closest))]
    InFile {
        key: String,
        file: String,
        closest: Option<String>,
    },
    /// A `HERD_<SECTION>__<KEY>` variable.
    #[error("unknown setting in the environment: {variable}{}", did_you_mean(.closest))]
    InEnvironment {
        variable: String,
        closest: Option<String>,
    },
}

fn did_you_mean(closest: &Option<String>) -> String {
    closest
        .as_ref()
        .map(|c| format!("; did you mean {c}?"))
        .unwrap_or_default()
}

/// Checks the keys of `file` (the settings file as a tree) against `known`.
pub fn check_file(file: &Value, known: &Value, name: &str) -> Result<(), UnknownKey> {
    let Some(sections) = file.as_object() else {
        return Ok(());
    };
    for (section, keys) in sections {
        let path = vec![section.as_str()];
        let known_keys = lookup(known, &path).ok_or_else(|| unknown(&path, known, name))?;
        let Some(keys) = keys.as_object() else {
            continue;
        };
        for (key, value) in keys {
            if section == "servers" {
                // servers.<id>.<key>: any id, known keys.
                for server_key in value.as_object().map(Map::keys).into_iter().flatten() {
                    let path = ["servers", "*", server_key.as_str()];
                    if lookup(known, &path).is_none() {
                        return Err(unknown(&["servers", key, server_key], known, name));
                    }
                }
            } else if !known_keys.as_object().is_some_and(|k| k.contains_key(key)) {
                return Err(unknown(&[section, key], known, name));
            }
        }
    }
    Ok(())
}

/// Checks every `HERD_<SECTION>__<KEY>` (and `HERD_SERVERS__<ID>__<KEY>`).
pub fn check_env(
    vars: impl Iterator<Item = (String, String)>,
    known: &Value,
) -> Result<(), UnknownKey> {
    for (var, _) in vars {
        let Some(rest) = var.strip_prefix("HERD_").filter(|r| r.contains("__")) else {
            continue;
        };
        let lower = rest.to_lowercase();
        let path: Vec<&str> = lower.split("__").collect();
        let pattern: Vec<&str> = match path.as_slice() {
            ["servers", _, key] => vec!["servers", "*", key],
            _ => path.clone(),
        };
        if pattern.len() != if path[0] == "servers" { 3 } else { 2 }
            || lookup(known, &pattern).is_none()
        {
            return Err(UnknownKey::InEnvironment {
                closest: closest(&pattern, known).map(|p| format!("HERD_{}", variable(&p, &path))),
                variable: var,
            });
        }
    }
    Ok(())
}

fn lookup<'a>(known: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(known, |node, key| node.get(*key))
}

fn unknown(path: &[&str], known: &Value, name: &str) -> UnknownKey {
    let pattern: Vec<&str> = match path {
        ["servers", _, key] => vec!["servers", "*", key],
        _ => path.to_vec(),
    };
    let shown = |p: &[&str]| {
        p.iter()
            .enumerate()
            .map(|(i, k)| if *k == "*" { path[i] } else { k })
            .collect::<Vec<_>>()
            .join(".")
    };
    UnknownKey::InFile {
        key: path.join("."),
        file: name.to_owned(),
        closest: closest(&pattern, known)
            .map(|p| shown(&p.iter().map(String::as_str).collect::<Vec<_>>())),
    }
}

/// The known key path closest to `path` (same depth), by edit distance of
/// the whole dotted path, when it is close enough to be a likely typo.
fn closest(path: &[&str], known: &Value) -> Option<Vec<String>> {
    let wanted = path.join(".");
    let mut all = Vec::new();
    paths(known, &mut Vec::new(), path.len(), &mut all);
    all.into_iter()
        .map(|p| (strsim::damerau_levenshtein(&wanted, &p.join(".")), p))
        .filter(|(distance, _)| *distance <= 3.max(wanted.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, p)| p)
}

fn paths(node: &Value, prefix: &mut Vec<String>, depth: usize, out: &mut Vec<Vec<String>>) {
    if prefix.len() == depth {
        out.push(prefix.clone());
        return;
    }
    for (key, child) in node.as_object().into_iter().flatten() {
        prefix.push(key.clone());
        paths(child, prefix, depth, out);
        prefix.pop();
    }
}

/// `HERD_...` for a known path, keeping the server id the user wrote.
fn variable(known: &[String], written: &[&str]) -> String {
    known
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if k == "*" {
                written.get(i).copied().unwrap_or("ID")
            } else {
                k
            }
        })
        .collect::<Vec<_>>()
        .join("__")
        .to_uppercase()
}
