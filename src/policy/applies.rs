//! What applies to one person: the rules whose *who* matches them (their
//! groups, their user name, or everyone), and when each applies today.
//!
//! The transparency page shows this to the person. It is the same "who"
//! test [`super::decide`] uses ([`super::Rule::applies_to`]) and the same
//! time windows, so the page cannot promise what the proxy does not do.
//! Pure: no IO, no clock; `now` is passed in.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

use super::{Policy, Rule};

/// One rule that is for the person.
#[derive(Debug, Clone)]
pub struct Applying<'p> {
    pub rule: &'p Rule,
    /// Its index in the policy.
    pub index: u16,
    /// The group it is for them through; `None` when it is for everyone
    /// or names their user.
    pub group: Option<Arc<str>>,
    pub when: When,
}

/// When a rule applies, seen from `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The rule has no time windows.
    Always,
    /// A window is open now; it closes at `until`.
    Now { until: Timestamp },
    /// A window opens later today (in the rule's time zone), at `from`.
    LaterToday { from: Timestamp },
    /// No window opens again today.
    NotToday,
}

impl When {
    /// True when the rule applies now or later today.
    pub fn today(self) -> bool {
        !matches!(self, When::NotToday)
    }
}

/// The person's group indices and every rule that is for them, in policy
/// order (the first that matches a request decides it).
pub fn applying<'p>(
    policy: &'p Policy,
    client: IpAddr,
    user: Option<&str>,
    now: Timestamp,
) -> (Vec<u16>, Vec<Applying<'p>>) {
    let groups = policy.groups_of(client, user);
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let (who, group) = rule.applies_to(&groups, user);
            who.then(|| Applying {
                rule,
                index: i as u16,
                group: group.map(|g| policy.groups[g as usize].name.clone()),
                when: when(rule, now),
            })
        })
        .collect();
    (groups, rules)
}

fn when(rule: &Rule, now: Timestamp) -> When {
    let Some(s) = &rule.schedule else {
        return When::Always;
    };
    let next = s.next_boundary_after(now);
    if s.contains(now) {
        return When::Now {
            until: next.unwrap_or(now),
        };
    }
    let end_of_day = now
        .to_zoned_datetime(s.tz.clone())
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned_datetime(s.tz.clone()).ok())
        .and_then(|z| z.start_of_day().ok())
        .map(|z| z.timestamp());
    match (next, end_of_day) {
        (Some(from), Some(end)) if from < end => When::LaterToday { from },
        _ => When::NotToday,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_dir;

    const CATALOG: &str = r#"
version: 1
categories: {video: Video, professional: Professional}
platforms:
  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}
  youtube: {name: YouTube, category: video, domains: [youtube.com]}
  linkedin: {name: LinkedIn, category: professional, domains: [linkedin.com]}
"#;

    const POLICY: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
groups:
  staff: {networks: [10.0.0.0/8]}
  marketing: {networks: [10.10.0.0/16]}
  hr: {users: [alice]}
rules:
  - {id: marketing-tiktok, groups: [marketing], platforms: [tiktok], action: allow}
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
  - {id: hr-linkedin, users: [alice], platforms: [linkedin], action: allow}
  - id: video-at-lunch
    groups: [staff]
    platforms: [youtube]
    when: [{days: [mon-fri], from: "12:00", to: "13:00"}]
    action: allow
  - id: no-video-mornings
    groups: [staff]
    platforms: [youtube]
    when: [{days: [mon-fri], from: "08:00", to: "11:00"}]
    action: block
  - {id: everyone-budget, platforms: [youtube], action: block, budget: {minutes: 30}}
"#;

    #[test]
    fn the_rules_for_a_person_with_when_they_apply_today() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
        let p = load_dir(dir.path()).unwrap();
        // Wednesday 10:30 in Berlin.
        let now: Timestamp = "2026-11-25T10:30:00+01:00".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let (groups, rules) = applying(&p, "10.1.2.3".parse().unwrap(), None, now);
        assert_eq!(groups, [0]);
        let got: Vec<(&str, When)> = rules.iter().map(|a| (&*a.rule.id, a.when)).collect();
        assert_eq!(
            got,
            [
                ("no-tiktok", When::Always),
                (
                    "video-at-lunch",
                    When::LaterToday {
                        from: at("2026-11-25T12:00:00+01:00")
                    }
                ),
                (
                    "no-video-mornings",
                    When::Now {
                        until: at("2026-11-25T11:00:00+01:00")
                    }
                ),
                ("everyone-budget", When::Always),
            ]
        );
        assert_eq!(rules[0].group.as_deref(), Some("staff"));
        assert_eq!(rules[3].group, None, "for everyone");
        // In the evening nothing scheduled applies any more today.
        let evening: Timestamp = "2026-11-25T18:00:00+01:00".parse().unwrap();
        let (_, rules) = applying(&p, "10.1.2.3".parse().unwrap(), None, evening);
        assert!(rules
            .iter()
            .filter(|a| a.rule.schedule.is_some())
            .all(|a| a.when == When::NotToday));
        // Marketing sees its own rule first; Alice her user rule.
        let (_, rules) = applying(&p, "10.10.0.9".parse().unwrap(), None, now);
        assert_eq!(&*rules[0].rule.id, "marketing-tiktok");
        let (groups, rules) = applying(&p, "192.0.2.1".parse().unwrap(), Some("alice"), now);
        assert_eq!(groups, [2]);
        assert_eq!(
            rules.iter().map(|a| &*a.rule.id).collect::<Vec<_>>(),
            ["hr-linkedin", "everyone-budget"]
        );
    }
}
