//! The one place that parses YAML.
//!
//! `serde_yaml` is archived upstream; keeping every call behind [`from_str`]
//! makes moving to a maintained fork a one-line change. Errors carry the
//! serde path (`rules[3].platforms[1]`) and, where the parser knows it, the
//! line and column.

use serde::de::DeserializeOwned;

/// A YAML document that could not be read into the expected shape.
#[derive(Debug, Clone)]
pub struct YamlError {
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    /// The path of the offending value, e.g. `rules[3].action`; empty at the root.
    pub path: String,
    pub message: String,
}

/// Parses `text` into `T`, reporting where the first problem is.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location().map(|l| (l.line(), l.column()));
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C"; we print the location ourselves.
        if let Some(idx) = message.find(" at line ") {
            message.truncate(idx);
        }
        // serde_yaml also prefixes a path, that of the mapping for an
        // unknown key (`rules[3]` where ours is `rules[3].mesage`); we
        // print ours, so drop its own.
        if let Some((prefix, rest)) = message.split_once(": ") {
            let covers = path
                .strip_prefix(prefix)
                .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']));
            if covers {
                message = rest.to_string();
            }
        }
        YamlError {
            location,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })
}
