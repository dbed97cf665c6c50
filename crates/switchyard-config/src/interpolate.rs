//! `${VAR}` and `${VAR:-default}` interpolation of configuration strings; `$${` is a literal `${`.

/// Replaces every `${VAR}` / `${VAR:-default}` in `input` with values from `env`.
///
/// Errors name the variable that is unset (without a default) or the malformed reference.
pub(crate) fn interpolate(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in `{input}`"))?;
            let reference = &tail[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{reference}}}` is not a valid variable reference"
                ));
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set and `${{{name}}}` has no default (write `${{{name}:-default}}`)"
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::interpolate;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let cases = [
            (
                "postgres://${HOST}/x",
                Ok("postgres://db.local/x".to_owned()),
            ),
            ("${MISSING:-fallback}", Ok("fallback".to_owned())),
            ("${EMPTY:-used}", Ok("used".to_owned())),
            ("cost $5 and $${HOST}", Ok("cost $5 and ${HOST}".to_owned())),
            ("no vars", Ok("no vars".to_owned())),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, &env), want, "{input}");
        }
    }

    #[test]
    fn refuses_unset_and_malformed_references() {
        for bad in ["${MISSING}", "${HOST", "${1X}", "${}"] {
            assert!(interpolate(bad, &env).is_err(), "{bad}");
        }
    }
}
