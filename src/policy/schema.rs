//! JSON Schemas for the policy files, generated from the raw structs.
//!
//! `socialgate schema` prints them; `docs/schema/` ships them so editors
//! (the VS Code YAML extension and other yaml-language-server clients)
//! complete keys and flag typos while typing. They come from the same
//! `deny_unknown_fields` structs the parser uses, so a key the schema
//! accepts is a key `socialgate check` accepts.

use schemars::generate::SchemaSettings;
use schemars::Schema;

use super::raw::{RawCases, RawCatalog, RawPolicy};

/// One of the three policy files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFile {
    /// policy.yaml
    Policy,
    /// catalog.yaml
    Catalog,
    /// tests.yaml
    Tests,
}

impl SchemaFile {
    /// All three, in the order `socialgate schema --all` prints them.
    pub const ALL: [SchemaFile; 3] = [SchemaFile::Policy, SchemaFile::Catalog, SchemaFile::Tests];

    /// The policy file this schema describes, e.g. `policy.yaml`.
    pub fn yaml_name(self) -> &'static str {
        match self {
            SchemaFile::Policy => "policy.yaml",
            SchemaFile::Catalog => "catalog.yaml",
            SchemaFile::Tests => "tests.yaml",
        }
    }

    /// The shipped schema's file name in `docs/schema/`, e.g. `policy.schema.json`.
    pub fn schema_name(self) -> &'static str {
        match self {
            SchemaFile::Policy => "policy.schema.json",
            SchemaFile::Catalog => "catalog.schema.json",
            SchemaFile::Tests => "tests.schema.json",
        }
    }

    /// The schema as a JSON value.
    pub fn schema(self) -> Schema {
        // Draft 7, not schemars' default 2020-12: the VS Code YAML extension
        // (yaml-language-server) validates draft 7 and only partly
        // understands later drafts.
        let generator = SchemaSettings::draft07().into_generator();
        let mut schema = match self {
            SchemaFile::Policy => generator.into_root_schema_for::<RawPolicy>(),
            SchemaFile::Catalog => generator.into_root_schema_for::<RawCatalog>(),
            SchemaFile::Tests => generator.into_root_schema_for::<RawCases>(),
        };
        schema.insert(
            "title".into(),
            format!("socialgate {}", self.yaml_name()).into(),
        );
        schema
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
