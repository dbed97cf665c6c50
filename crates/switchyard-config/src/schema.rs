//! The JSON schema of `router.toml`, generated from the types (committed as `router.schema.json`).

/// The JSON schema of [`crate::Config`], pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(crate::Config);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    /// The committed schema must match the types; run with `SWITCHYARD_BLESS=1` to rewrite it.
    #[test]
    fn committed_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../router.schema.json");
        let generated = super::json_schema();
        if std::env::var_os("SWITCHYARD_BLESS").is_some() {
            std::fs::write(path, &generated).expect("write router.schema.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "router.schema.json is stale: run `SWITCHYARD_BLESS=1 cargo test -p switchyard-config`"
        );
    }
}
