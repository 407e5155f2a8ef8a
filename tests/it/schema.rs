//! The JSON Schemas of the policy files: the shipped copies in docs/schema/
//! are exactly what `socialgate schema` generates.

use std::path::{Path, PathBuf};

use socialgate::policy::schema::SchemaFile;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_schema(file: SchemaFile) -> PathBuf {
    root().join("docs/schema").join(file.schema_name())
}

#[test]
fn shipped_schemas_equal_the_generated_ones() {
    for file in SchemaFile::ALL {
        let path = shipped_schema(file);
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        let name = format!("{file:?}").to_lowercase();
        assert!(
            shipped == file.render(),
            "{} is out of date with src/policy/raw.rs; run `cargo run -- schema {name} > docs/schema/{}` \
             (or `cargo run -- schema --all docs/schema`)",
            path.display(),
            file.schema_name(),
        );
    }
}

#[tokio::test]
async fn schema_command_prints_the_generated_schema() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .args(["schema", "catalog"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        SchemaFile::Catalog.render()
    );
}
