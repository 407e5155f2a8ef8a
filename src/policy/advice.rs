//! Advice: what a valid policy does that its author may not expect.
//!
//! `socialgate check` prints these as notes after "ok"; they never stop a
//! policy from loading. Pure: reads the compiled policy only.

use super::{Action, Mode, Policy};

/// One note about a valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file the note is about.
    pub file: &'static str,
    /// Where in it, e.g. `rules[2]`.
    pub path: String,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "note: {}: {}: {}\n  hint: {}",
            self.file, self.path, self.message, self.hint
        )
    }
}

/// Every note for `policy`, in rule order.
pub fn advice(policy: &Policy) -> Vec<Note> {
    let mut notes = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        if rule.action == Action::Warn && rule.mode == Mode::Enforce {
            notes.push(unshown_warning(policy, i));
        }
    }
    notes
}

/// A warn rule covers sites browsers reach over HTTPS, and HTTPS is not
/// inspected: inside those tunnels no page can be shown.
fn unshown_warning(policy: &Policy, i: usize) -> Note {
    let rule = &policy.rules[i];
    let named: Vec<&str> = match &rule.platforms {
        Some(mask) => policy
            .platforms
            .iter()
            .zip(mask)
            .filter(|(_, on)| **on)
            .map(|(p, _)| &*p.name)
            .collect(),
        None => Vec::new(),
    };
    let what = match (named.len(), rule.has_domains) {
        (0, true) => "the domains it lists".to_string(),
        (0, false) => "every site".to_string(),
        (n, extra) => {
            let mut s = if n > 4 {
                format!("{} and {} more platforms", named[..3].join(", "), n - 3)
            } else {
                named.join(", ")
            };
            if extra {
                s.push_str(" and the domains it lists");
            }
            s
        }
    };
    Note {
        file: super::compile::POLICY_FILE,
        path: format!("rules[{i}]"),
        message: format!(
            "rule {:?} warns on {what}, which browsers reach over HTTPS; socialgate does not inspect HTTPS, so no warning page can be shown inside those tunnels: they pass, recorded warn: unshown. Only plain-HTTP requests get the warning",
            &*rule.id
        ),
        hint: "to keep people off a platform on HTTPS today, use `action: block`; `socialgate explain` shows what happens to one URL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_dir;

    #[test]
    fn an_enforced_warn_rule_gets_a_note_naming_its_platforms() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("catalog.yaml"),
            "version: 1\ncategories: {video: Video}\nplatforms:\n  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}\n  youtube: {name: YouTube, category: video, domains: [youtube.com]}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            r#"
version: 1
groups: {staff: {networks: [10.0.0.0/8]}}
rules:
  - {id: video-caution, categories: [video], action: warn}
  - {id: dry, platforms: [tiktok], action: warn, mode: report}
  - {id: intranet, domains: [social.example.org], action: warn}
  - {id: no-tiktok, platforms: [tiktok], action: block}
"#,
        )
        .unwrap();
        let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let notes = advice(&p);
        let paths: Vec<&str> = notes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            ["rules[0]", "rules[2]"],
            "report mode and block get none"
        );
        assert!(notes[0].message.contains("TikTok, YouTube"), "{}", notes[0]);
        assert!(notes[0].message.contains("warn: unshown"));
        assert!(notes[1].message.contains("the domains it lists"));
        assert!(notes[0]
            .to_string()
            .starts_with("note: policy.yaml: rules[0]: "));
    }
}
