//! JSON Schemas for the policy files, generated from the raw structs.
//!
//! `socialgate schema` prints them; `docs/schema/` ships them so editors
//! (the VS Code YAML extension and other yaml-language-server clients)
//! complete keys and flag typos while typing. They come from the same
//! `deny_unknown_fields` structs the parser uses, so a key the schema
//! accepts is a key `socialgate check` accepts.

use schemars::generate::SchemaSettings;
use schemars::Schema;

use super::raw::{RawActivities, RawCases, RawCatalog, RawPolicy};

/// One of the policy files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFile {
    /// policy.yaml
    Policy,
    /// catalog.yaml
    Catalog,
    /// tests.yaml
    Tests,
    /// activities.yaml
    Activities,
}

impl SchemaFile {
    /// All of them, in the order `socialgate schema --all` prints them.
    pub const ALL: [SchemaFile; 4] = [
        SchemaFile::Policy,
        SchemaFile::Catalog,
        SchemaFile::Tests,
        SchemaFile::Activities,
    ];

    /// The policy file this schema describes, e.g. `policy.yaml`.
    pub fn yaml_name(self) -> &'static str {
        match self {
            SchemaFile::Policy => "policy.yaml",
            SchemaFile::Catalog => "catalog.yaml",
            SchemaFile::Tests => "tests.yaml",
            SchemaFile::Activities => "activities.yaml",
        }
    }

    /// The shipped schema's file name in `docs/schema/`, e.g. `policy.schema.json`.
    pub fn schema_name(self) -> &'static str {
        match self {
            SchemaFile::Policy => "policy.schema.json",
            SchemaFile::Catalog => "catalog.schema.json",
            SchemaFile::Tests => "tests.schema.json",
            SchemaFile::Activities => "activities.schema.json",
        }
    }

    /// The schema as a JSON value.
    pub fn schema(self) -> Schema {
        // Draft 7, not schemars' default 2020-12: the VS Code YAML extension
        // (yaml-language-server) validates draft 7 and only partly
        // understands later drafts.
        let generator = SchemaSettings::draft07().into_generator();
        let schema = match self {
            SchemaFile::Policy => generator.into_root_schema_for::<RawPolicy>(),
            SchemaFile::Catalog => generator.into_root_schema_for::<RawCatalog>(),
            SchemaFile::Tests => generator.into_root_schema_for::<RawCases>(),
            SchemaFile::Activities => generator.into_root_schema_for::<RawActivities>(),
        };
        let mut schema = schema.to_value();
        allow_null_where_serde_yaml_does(&mut schema);
        schema["title"] = format!("socialgate {}", self.yaml_name()).into();
        // Back into a Schema: its serializer puts `$schema`, `title`,
        // `description` and `type` first, which reads better than sorted keys.
        Schema::try_from(schema).expect("a root schema is an object")
    }

    /// The schema as pretty-printed JSON with a trailing newline, exactly as
    /// shipped in `docs/schema/`.
    pub fn render(self) -> String {
        let mut out =
            serde_json::to_string_pretty(&self.schema()).expect("a JSON Schema always serializes");
        out.push('\n');
        out
    }
}

/// serde_yaml reads an empty value (`rules:`, `settings:`, YAML `null`) as an
/// empty list, map or struct, so `check` accepts it wherever a list, a map
/// or a struct whose keys are all optional is expected. schemars does not
/// know this; without it the editor would flag `groups:` with nothing under
/// it, which `check` accepts. A struct with required keys still fails in
/// both (missing field), as does null for a string, number or boolean.
fn allow_null_where_serde_yaml_does(root: &mut serde_json::Value) {
    use serde_json::{json, Value};

    // Definitions without required keys: null reads as their default.
    let all_optional: Vec<String> = root
        .get("definitions")
        .and_then(Value::as_object)
        .map(|defs| {
            defs.iter()
                .filter(|(_, d)| d.get("required").is_none())
                .map(|(name, _)| format!("#/definitions/{name}"))
                .collect()
        })
        .unwrap_or_default();

    fn nullable(slot: &mut Value, all_optional: &[String]) {
        let Some(obj) = slot.as_object_mut() else {
            return;
        };
        match obj.get("type") {
            Some(Value::String(t)) if t == "array" || t == "object" => {
                let t = t.clone();
                obj.insert("type".into(), json!([t, "null"]));
                return;
            }
            _ => {}
        }
        if let Some(Value::String(r)) = obj.get("$ref") {
            if all_optional.contains(r) {
                let r = obj.remove("$ref").unwrap_or_default();
                obj.insert("anyOf".into(), json!([{ "$ref": r }, { "type": "null" }]));
            }
        }
    }

    fn walk(schema: &mut Value, all_optional: &[String]) {
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for p in props.values_mut() {
                nullable(p, all_optional);
            }
        }
        if let Some(v @ Value::Object(_)) = obj.get_mut("additionalProperties") {
            nullable(v, all_optional);
        }
        if let Some(v @ Value::Object(_)) = obj.get_mut("items") {
            nullable(v, all_optional);
        }
        for (key, child) in obj.iter_mut() {
            match key.as_str() {
                "properties" | "definitions" => {
                    if let Value::Object(m) = child {
                        for c in m.values_mut() {
                            walk(c, all_optional);
                        }
                    }
                }
                "anyOf" | "oneOf" | "allOf" => {
                    if let Value::Array(a) = child {
                        for c in a {
                            walk(c, all_optional);
                        }
                    }
                }
                "items" | "additionalProperties" => walk(child, all_optional),
                _ => {}
            }
        }
    }

    walk(root, &all_optional);
}
