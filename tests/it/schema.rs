//! The JSON Schemas of the policy files: the shipped copies in docs/schema/
//! are exactly what `socialgate schema` generates, the shipped policies
//! validate against them, and they reject what the parser rejects (a
//! misspelt key), as an editor using them would.

use std::path::{Path, PathBuf};

use serde_json::Value;
use socialgate::policy::schema::SchemaFile;

use crate::support::shipped_policies;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_schema(file: SchemaFile) -> PathBuf {
    root().join("docs/schema").join(file.schema_name())
}

fn validator(file: SchemaFile) -> jsonschema::Validator {
    let schema: Value = serde_json::to_value(file.schema()).unwrap();
    // Draft 7: what the VS Code YAML extension validates.
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", file.schema_name()))
}

/// YAML -> JSON the way yaml-language-server sees it.
fn yaml_to_json(text: &str) -> Value {
    serde_yaml::from_str(text).expect("YAML parses")
}

fn errors(file: SchemaFile, instance: &Value) -> Vec<String> {
    validator(file)
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
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

#[test]
fn shipped_policies_carry_the_modeline_and_validate_against_their_schema() {
    for file in SchemaFile::ALL {
        let path = shipped_policies().join(file.yaml_name());
        let text = std::fs::read_to_string(&path).unwrap();
        let modeline = format!(
            "# yaml-language-server: $schema=../docs/schema/{}",
            file.schema_name()
        );
        assert_eq!(
            text.lines().next(),
            Some(modeline.as_str()),
            "{}",
            path.display()
        );
        // The modeline's relative path names the shipped schema.
        assert!(shipped_policies()
            .join("../docs/schema")
            .join(file.schema_name())
            .is_file());
        let errs = errors(file, &yaml_to_json(&text));
        assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
    }
}

#[test]
fn a_misspelt_key_is_rejected_by_the_schema_as_by_the_parser() {
    let text = std::fs::read_to_string(shipped_policies().join("policy.yaml")).unwrap();
    // The first rule with a message, its key misspelt.
    let typo = text.replacen("    message:", "    mesage:", 1);
    assert_ne!(typo, text, "policy.yaml has a rule with a message");

    let errs = errors(SchemaFile::Policy, &yaml_to_json(&typo));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("/rules/"), "{errs:#?}");
    assert!(errs[0].contains("mesage"), "{errs:#?}");

    let parsed = socialgate::yaml::from_str::<socialgate::policy::raw::RawPolicy>(&typo);
    let err = parsed.expect_err("the parser rejects the typo too");
    assert!(err.message.contains("mesage"), "{}", err.message);
}

#[test]
fn the_schema_agrees_with_the_parser_on_optional_and_untagged_values() {
    // Minimal files: only the required keys.
    assert!(errors(SchemaFile::Policy, &serde_json::json!({"version": 1})).is_empty());
    assert!(!errors(SchemaFile::Policy, &serde_json::json!({})).is_empty());
    // Ports: numbers and strings (untagged), not lists or booleans.
    let ports = |p: Value| serde_json::json!({"version": 1, "tunnels": {"ports": p}});
    assert!(errors(
        SchemaFile::Policy,
        &ports(serde_json::json!([443, "8000-8080", "any"]))
    )
    .is_empty());
    assert!(!errors(SchemaFile::Policy, &ports(serde_json::json!([true]))).is_empty());
    // A test case without `expect`.
    let case = serde_json::json!({"tests": [{"name": "n", "client": "10.0.0.1", "url": "http://a.example/"}]});
    assert!(!errors(SchemaFile::Tests, &case).is_empty());
    assert!(
        socialgate::yaml::from_str::<socialgate::policy::raw::RawCases>(
            &serde_json::to_string(&case).unwrap()
        )
        .is_err()
    );
}

/// Whether the parser reads `text` as policy.yaml (the YAML shape only).
fn parser_accepts_policy(text: &str) -> bool {
    socialgate::yaml::from_str::<socialgate::policy::raw::RawPolicy>(text).is_ok()
}

#[test]
fn schema_and_parser_agree_on_empty_values() {
    // serde_yaml reads an empty value as an empty list, map or struct; the
    // schema must not flag what `check` accepts, nor accept what it refuses.
    // (One known difference: serde_yaml reads any scalar, even an empty one,
    // as a string where a string is expected, so `name: 2024` parses; the
    // schema asks for a string there, and `check` refuses the empty or odd
    // values that matter: actions, ids, networks, times.)
    let cases = [
        ("version: 1\nsettings:\nauth:\ngroups:\nrules:\n", true),
        ("version: 1\ngroups:\n  staff:\n", true),
        ("version: 1\ntunnels:\n  ports:\n", true),
        (
            "version: 1\nrules:\n  - id: a\n    action: allow\n    groups:\n    when:\n",
            true,
        ),
        ("version: 1\nauth:\n  required:\n", false),
        (
            "version: 1\nrules:\n  - id: a\n    action: allow\n    include_embedded:\n",
            false,
        ),
        ("version: 1\nrules:\n  -\n", false),
        ("version:\n", false),
    ];
    for (text, ok) in cases {
        assert_eq!(parser_accepts_policy(text), ok, "parser on {text:?}");
        let errs = errors(SchemaFile::Policy, &yaml_to_json(text));
        assert_eq!(errs.is_empty(), ok, "schema on {text:?}: {errs:#?}");
    }
}

#[test]
fn readme_and_operations_quote_the_shipped_policy_hash() {
    let policy = socialgate::policy::load_dir(&shipped_policies()).expect("shipped policies load");
    let hash = &policy.source.hash;
    for page in ["README.md", "docs/operations.md"] {
        let text = std::fs::read_to_string(root().join(page)).unwrap();
        assert!(
            text.contains(hash.as_str()),
            "{page} quotes another policy hash than the shipped policies' {hash}; \
             run `cargo run -- check policies` and update the quoted outputs"
        );
    }
}
