//! `${VAR}` and `${VAR:-default}` interpolation of config values.
//!
//! Values are resolved from the environment each time the file is loaded, so a reload picks up
//! a rotated key. A missing variable without a default is an error, never an empty string.

/// Replaces every `${VAR}` / `${VAR:-default}` in `value`, looking variables up with `lookup`.
/// Returns the name of the first variable that is neither set nor defaulted.
pub fn interpolate(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("an unterminated `${` (expected `${NAME}`)".to_owned());
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            // Not quoted: in a secret field, the text between the braces may be the secret.
            return Err(
                "a `${` that is not a valid variable reference (expected `${NAME}` or \
                 `${NAME:-default}`, NAME of letters, digits and `_`)"
                    .to_owned(),
            );
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!("environment variable `{name}` is not set"));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a value refers to the environment (so `check` can print it as written).
pub fn has_reference(value: &str) -> bool {
    value.contains("${")
}

/// A value as written, for display, with the default of every `${VAR:-default}` replaced by
/// `<redacted>`: in a secret field the default is often the secret itself.
pub fn redacted_defaults(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            break;
        };
        out.push_str(&rest[..start + 2]);
        match after[..end].split_once(":-") {
            Some((name, default)) if !default.is_empty() => {
                out.push_str(name);
                out.push_str(":-<redacted>");
            }
            _ => out.push_str(&after[..end]),
        }
        out.push('}');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether a value is exactly one `${...}` reference, with no literal text around it.
pub fn is_one_reference(value: &str) -> bool {
    value.starts_with("${") && value.find('}') == Some(value.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn resolves_set_defaulted_and_literal_text() {
        assert_eq!(
            interpolate("Bearer ${SET}!", &env).unwrap(),
            "Bearer value!"
        );
        assert_eq!(interpolate("${UNSET:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${UNSET:-}", &env).unwrap(), "");
        assert_eq!(interpolate("no refs $HOME", &env).unwrap(), "no refs $HOME");
    }

    #[test]
    fn defaults_are_redacted_for_display_and_names_kept() {
        assert_eq!(
            redacted_defaults("${KEY:-sk-default}"),
            "${KEY:-<redacted>}"
        );
        assert_eq!(
            redacted_defaults("redis://:${PW:-hunter2}@${HOST:-h}:6379"),
            "redis://:${PW:-<redacted>}@${HOST:-<redacted>}:6379"
        );
        assert_eq!(redacted_defaults("${KEY}"), "${KEY}");
        assert!(is_one_reference("${KEY:-x}") && !is_one_reference("sk-${KEY}"));
    }

    #[test]
    fn an_invalid_reference_is_not_quoted() {
        let err = interpolate("${sk-live-secret}", &env).unwrap_err();
        assert!(!err.contains("sk-live-secret"), "{err}");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = interpolate("${OPENAI_API_KEY}", &env).unwrap_err();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
        assert!(interpolate("${OOPS", &env).is_err());
        assert!(interpolate("${a b}", &env).is_err());
    }
}
