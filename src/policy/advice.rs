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
        // A rule whose tunnels are decrypted sees every request inside.
        let inspected = rule.inspect.unwrap_or(policy.inspection.default);
        if inspected {
            continue;
        }
        if rule.action == Action::Warn && rule.mode == Mode::Enforce {
            notes.push(unshown_warning(policy, i));
        }
        if rule.read_only.is_some() || rule.activities.is_some() {
            notes.push(unseen_activities(policy, i));
        }
    }
    notes
}

/// What a rule covers, in words: its platforms, its domains, or everything.
fn covers(policy: &Policy, i: usize) -> String {
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
    match (named.len(), rule.has_domains) {
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
    }
}

/// The fix both notes give: inspect the rule's tunnels.
const INSPECT_HINT: &str = "add `inspect: true` to the rule (with the company CA: `socialgate ca init`, docs/tls-inspection.md) so socialgate decrypts those tunnels and sees each request";

/// A warn rule covers sites browsers reach over HTTPS, and those tunnels
/// are not inspected: inside them no page can be shown.
fn unshown_warning(policy: &Policy, i: usize) -> Note {
    let rule = &policy.rules[i];
    let what = covers(policy, i);
    Note {
        file: super::compile::POLICY_FILE,
        path: format!("rules[{i}]"),
        message: format!(
            "rule {:?} warns on {what}, which browsers reach over HTTPS; the rule does not inspect HTTPS, so no warning page can be shown inside those tunnels: they pass, recorded warn: unshown. Only plain-HTTP requests get the warning",
            &*rule.id
        ),
        hint: format!("{INSPECT_HINT}; or use `action: block`. `socialgate explain` shows what happens to one URL"),
    }
}

/// An activity rule (`read_only`, `activities:`) on tunnels that are not
/// inspected: a tunnel shows no request, so the site-level decision stands
/// there (recorded `activity_unseen`).
fn unseen_activities(policy: &Policy, i: usize) -> Note {
    let rule = &policy.rules[i];
    let what = covers(policy, i);
    let kind = if rule.read_only.is_some() {
        "is read_only"
    } else {
        "is about activities"
    };
    Note {
        file: super::compile::POLICY_FILE,
        path: format!("rules[{i}]"),
        message: format!(
            "rule {:?} {kind} on {what}, which browsers reach over HTTPS; the rule does not inspect HTTPS, so inside those tunnels no request (post, upload, message) can be seen: they are decided per site, recorded activity_unseen. Only plain-HTTP requests are judged by activity",
            &*rule.id
        ),
        hint: format!("{INSPECT_HINT}. `socialgate explain --method POST URL` shows the decision for one request"),
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

    #[test]
    fn inspected_rules_get_no_note_and_activity_rules_on_tunnels_get_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("catalog.yaml"),
            "version: 1\ncategories: {video: Video, business: Business}\nplatforms:\n  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}\n  linkedin: {name: LinkedIn, category: business, domains: [linkedin.com]}\n",
        )
        .unwrap();
        let policy = |default: bool| {
            format!(
                r#"
version: 1
inspection: {{default: {default}}}
groups: {{staff: {{networks: [10.0.0.0/8]}}}}
rules:
  - {{id: warn-seen, platforms: [tiktok], action: warn, inspect: true}}
  - {{id: li-read, platforms: [linkedin], action: read_only}}
  - {{id: li-read-seen, platforms: [linkedin], action: read_only, inspect: true}}
  - {{id: no-uploads, platforms: [tiktok], activities: [upload], action: block}}
  - {{id: warn-never, platforms: [tiktok], action: warn, inspect: false}}
"#
            )
        };
        let load = |yaml: String| {
            std::fs::write(dir.path().join("policy.yaml"), yaml).unwrap();
            load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"))
        };
        let notes = advice(&load(policy(false)));
        let paths: Vec<&str> = notes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["rules[1]", "rules[3]", "rules[4]"]);
        assert!(
            notes[0].message.contains("is read_only on LinkedIn"),
            "{}",
            notes[0]
        );
        assert!(notes[0].message.contains("activity_unseen"), "{}", notes[0]);
        assert!(notes[0].hint.contains("inspect: true"), "{}", notes[0]);
        assert!(
            notes[1].message.contains("is about activities"),
            "{}",
            notes[1]
        );
        assert!(notes[2].message.contains("warn: unshown"), "{}", notes[2]);
        // inspection.default covers the rules that say nothing.
        let notes = advice(&load(policy(true)));
        let paths: Vec<&str> = notes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["rules[4]"], "only the rule that refuses inspection");
    }
}
