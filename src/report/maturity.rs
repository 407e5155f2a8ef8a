//! The social-maturity model: how far along each group's use of social
//! platforms is, what holds it back, and the next step it suggests.
//!
//! A group climbs five stages; each needs the one before:
//!
//! | stage | label | criterion to reach it |
//! |---|---|---|
//! | 1 | dormant | (start) |
//! | 2 | exploring | *adoption*: at least 20 % of members active on a platform |
//! | 3 | regular use | *depth*: at least 25 % of members are regular users |
//! | 4 | contributing | *contribution*: at least 10 % of members contributed |
//! | 5 | leading | *breadth*: 3 or more platforms adopted (each by 20 % of members) |
//!
//! *Friction* is measured beside the stages: when 10 % of members or more
//! were refused on a platform's own domains, policy is what holds the
//! group back, whatever criterion it misses.
//!
//! The model sees only numbers the report publishes ([`Profile`]): a
//! criterion whose input is hidden is neither met nor missed, and the
//! assessment stops there and says so. It is pure: no IO, no clock.

/// Criterion thresholds (docs/reports.md).
pub const ADOPTION: f64 = 0.20;
pub const REGULAR: f64 = 0.25;
pub const CONTRIBUTION: f64 = 0.10;
pub const BREADTH: usize = 3;
pub const FRICTION: f64 = 0.10;
/// A platform counts as adopted by a group from this adoption on.
pub const ADOPTED: f64 = 0.20;

/// What the report publishes about a group (`None`: hidden).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub group: String,
    pub members: u64,
    /// Persons active on any platform.
    pub active: Option<u64>,
    /// Regular users (active on enough days).
    pub regular: Option<u64>,
    pub minutes_per_active_user: Option<f64>,
    /// Whether any of the group's activity was visible (inspected
    /// traffic); known even when the counts are hidden, since a hidden
    /// count is never zero.
    pub inspected: bool,
    /// Persons who contributed.
    pub contributors: Option<u64>,
    /// Platforms with a published adoption of at least [`ADOPTED`], most
    /// adopted first.
    pub adopted: Vec<String>,
    /// The group's most used platform (published), if any.
    pub top_platform: Option<String>,
    /// Persons refused on a primary attempt (any platform), and the
    /// platform most of them were refused on, with their number.
    pub blocked: Option<u64>,
    pub top_blocked: Option<(String, u64)>,
    /// A platform other groups adopted and this one did not.
    pub suggestion: Option<String>,
}

/// A maturity stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Dormant = 1,
    Exploring,
    Regular,
    Contributing,
    Leading,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Dormant => "dormant",
            Stage::Exploring => "exploring",
            Stage::Regular => "regular use",
            Stage::Contributing => "contributing",
            Stage::Leading => "leading",
        }
    }
}

/// What holds a group back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Adoption,
    Regularity,
    Contribution,
    Breadth,
    Policy,
    /// An input is hidden to protect fewer than k persons.
    Hidden,
    Nothing,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Adoption => "adoption",
            Hold::Regularity => "regular use",
            Hold::Contribution => "contribution",
            Hold::Breadth => "breadth",
            Hold::Policy => "policy",
            Hold::Hidden => "hidden",
            Hold::Nothing => "nothing",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub stage: Stage,
    pub held_back_by: Hold,
    pub evidence: String,
    pub next_step: String,
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Assesses a group from what the report publishes about it.
pub fn assess(p: &Profile) -> Assessment {
    let m = p.members.max(1) as f64;
    let share = |n: Option<u64>| n.map(|n| n as f64 / m);
    let g = &p.group;
    let top = p
        .top_platform
        .as_deref()
        .unwrap_or("the platform they use most");
    let mut stage = Stage::Dormant;
    // (criterion, met?) in order; None: hidden.
    let adoption = share(p.active);
    let regular = share(p.regular);
    // Some(None): nothing visible; None: hidden.
    let contribution = match (p.inspected, p.contributors) {
        (false, _) => Some(None),
        (true, Some(c)) => Some(Some(c as f64 / m)),
        (true, None) => None,
    };
    let breadth = p.adopted.len();
    let mut gap: Option<Hold> = None;
    let mut hidden_input = "";
    let steps: [(Stage, Hold, Option<bool>, &str); 4] = [
        (
            Stage::Exploring,
            Hold::Adoption,
            adoption.map(|a| a >= ADOPTION),
            "active members",
        ),
        (
            Stage::Regular,
            Hold::Regularity,
            regular.map(|r| r >= REGULAR),
            "regular users",
        ),
        (
            Stage::Contributing,
            Hold::Contribution,
            match contribution {
                Some(Some(c)) => Some(c >= CONTRIBUTION),
                Some(None) => Some(false),
                None => None,
            },
            "contributors",
        ),
        (
            Stage::Leading,
            Hold::Breadth,
            Some(breadth >= BREADTH),
            "platforms adopted",
        ),
    ];
    for (next, hold, met, input) in steps {
        match met {
            Some(true) => stage = next,
            Some(false) => {
                gap = Some(hold);
                break;
            }
            None => {
                gap = Some(Hold::Hidden);
                hidden_input = input;
                break;
            }
        }
    }
    let friction = share(p.blocked).filter(|&b| b >= FRICTION);
    if let (Some(b), Some(hold)) = (friction, gap) {
        if hold != Hold::Hidden {
            let (what, n) = p
                .top_blocked
                .clone()
                .unwrap_or_else(|| ("social platforms".to_owned(), p.blocked.unwrap_or(0)));
            return Assessment {
                stage,
                held_back_by: Hold::Policy,
                evidence: format!(
                    "{} of members were refused on a platform's own site; {n} tried {what}",
                    pct(b)
                ),
                next_step: format!(
                    "Review the rules that refuse {what} for {g}: {n} members asked for it."
                ),
            };
        }
    }
    let (hold, evidence, next_step) = match gap {
        None => (
            Hold::Nothing,
            format!(
                "{} of members contribute, on {breadth} platforms: {}",
                pct(contribution.flatten().unwrap_or(0.0)),
                p.adopted.join(", ")
            ),
            "Share what works with other groups.".to_owned(),
        ),
        Some(Hold::Hidden) => (
            Hold::Hidden,
            format!("the number of {hidden_input} is hidden to protect fewer than k persons"),
            "Report on a longer period or a larger group to see further.".to_owned(),
        ),
        Some(Hold::Adoption) => (
            Hold::Adoption,
            format!(
                "only {} of members used any social platform",
                pct(adoption.unwrap_or(0.0))
            ),
            match &p.suggestion {
                Some(s) => format!("Show {g} where the company is active: start with {s}, which other groups use."),
                None => format!("Show {g} where the company is active and why it matters."),
            },
        ),
        Some(Hold::Regularity) => (
            Hold::Regularity,
            format!(
                "{} of members use social platforms regularly{}",
                pct(regular.unwrap_or(0.0)),
                p.minutes_per_active_user
                    .map(|v| format!(", {v:.0} minutes per active user in the period"))
                    .unwrap_or_default()
            ),
            format!("Make it a habit: a short weekly slot to read and share company news on {top}."),
        ),
        Some(Hold::Contribution) => match contribution {
            Some(None) => (
                Hold::Contribution,
                "contribution cannot be seen: none of the group's traffic was inspected".to_owned(),
                format!(
                    "Measure it: inspect {top} for {g} (`inspect: true` on its rule) so posts and comments are seen."
                ),
            ),
            _ => (
                Hold::Contribution,
                format!(
                    "{} of members contributed (posts, comments, reactions, shares, uploads, messages)",
                    pct(contribution.flatten().unwrap_or(0.0))
                ),
                format!("Invite contribution: comment on and share the company's posts on {top}."),
            ),
        },
        Some(Hold::Breadth) => (
            Hold::Breadth,
            format!(
                "{breadth} platform(s) adopted: {}",
                if p.adopted.is_empty() {
                    "none".to_owned()
                } else {
                    p.adopted.join(", ")
                }
            ),
            match &p.suggestion {
                Some(s) => format!("Try {s}: other groups use it, {g} does not yet."),
                None => "Try a second platform where the company is active.".to_owned(),
            },
        ),
        Some(Hold::Policy) | Some(Hold::Nothing) => unreachable!("not a criterion"),
    };
    Assessment {
        stage,
        held_back_by: hold,
        evidence,
        next_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(members: u64) -> Profile {
        Profile {
            group: "g".into(),
            members,
            active: Some(0),
            regular: Some(0),
            minutes_per_active_user: Some(0.0),
            inspected: false,
            contributors: Some(0),
            blocked: Some(0),
            ..Profile::default()
        }
    }

    fn adopted(n: usize) -> Vec<String> {
        ["linkedin", "x", "youtube", "reddit"][..n]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// (name, profile, stage, held back by)
    fn cases() -> Vec<(&'static str, Profile, Stage, Hold)> {
        let base = profile(20);
        vec![
            (
                "nobody uses anything",
                base.clone(),
                Stage::Dormant,
                Hold::Adoption,
            ),
            (
                "a few try a platform (15 %)",
                Profile {
                    active: Some(3),
                    ..base.clone()
                },
                Stage::Dormant,
                Hold::Adoption,
            ),
            (
                "half are active, but seldom",
                Profile {
                    active: Some(10),
                    regular: Some(2),
                    ..base.clone()
                },
                Stage::Exploring,
                Hold::Regularity,
            ),
            (
                "regular readers, nothing inspected",
                Profile {
                    active: Some(14),
                    regular: Some(8),
                    adopted: adopted(1),
                    ..base.clone()
                },
                Stage::Regular,
                Hold::Contribution,
            ),
            (
                "regular readers who seldom write (5 %)",
                Profile {
                    active: Some(14),
                    regular: Some(8),
                    inspected: true,
                    contributors: Some(1),
                    adopted: adopted(2),
                    ..base.clone()
                },
                Stage::Regular,
                Hold::Contribution,
            ),
            (
                "contributors on one platform",
                Profile {
                    active: Some(14),
                    regular: Some(8),
                    inspected: true,
                    contributors: Some(4),
                    adopted: adopted(1),
                    ..base.clone()
                },
                Stage::Contributing,
                Hold::Breadth,
            ),
            (
                "contributors on three platforms",
                Profile {
                    active: Some(18),
                    regular: Some(12),
                    inspected: true,
                    contributors: Some(9),
                    adopted: adopted(3),
                    ..base.clone()
                },
                Stage::Leading,
                Hold::Nothing,
            ),
            (
                "a refused platform holds back a group that misses adoption",
                Profile {
                    active: Some(2),
                    blocked: Some(6),
                    top_blocked: Some(("tiktok".into(), 6)),
                    ..base.clone()
                },
                Stage::Dormant,
                Hold::Policy,
            ),
            (
                "one refused person in twenty is not friction (5 %)",
                Profile {
                    active: Some(2),
                    blocked: Some(1),
                    ..base.clone()
                },
                Stage::Dormant,
                Hold::Adoption,
            ),
            (
                "friction does not pull down a leading group",
                Profile {
                    active: Some(18),
                    regular: Some(12),
                    inspected: true,
                    contributors: Some(9),
                    adopted: adopted(4),
                    blocked: Some(10),
                    ..base.clone()
                },
                Stage::Leading,
                Hold::Nothing,
            ),
            (
                "a hidden number stops the assessment where it is needed",
                Profile {
                    active: Some(14),
                    regular: None,
                    ..base.clone()
                },
                Stage::Exploring,
                Hold::Hidden,
            ),
            (
                "hidden blocked demand is not read as zero or as friction",
                Profile {
                    active: Some(2),
                    blocked: None,
                    ..base.clone()
                },
                Stage::Dormant,
                Hold::Adoption,
            ),
            (
                "hidden contributors stop at regular use",
                Profile {
                    active: Some(14),
                    regular: Some(8),
                    inspected: true,
                    contributors: None,
                    ..base.clone()
                },
                Stage::Regular,
                Hold::Hidden,
            ),
        ]
    }

    #[test]
    fn stages_and_what_holds_each_group_back() {
        for (name, p, stage, hold) in cases() {
            let a = assess(&p);
            assert_eq!((a.stage, a.held_back_by), (stage, hold), "{name}: {a:?}");
            assert!(!a.evidence.is_empty() && !a.next_step.is_empty(), "{name}");
        }
    }

    #[test]
    fn the_evidence_names_numbers_and_the_next_step_names_a_platform() {
        let p = Profile {
            active: Some(2),
            blocked: Some(6),
            top_blocked: Some(("tiktok".into(), 6)),
            ..profile(20)
        };
        let a = assess(&p);
        assert!(
            a.evidence.contains("30%") && a.evidence.contains("6 tried tiktok"),
            "{a:?}"
        );
        assert!(
            a.next_step.contains("tiktok") && a.next_step.contains("for g"),
            "{a:?}"
        );
        let p = Profile {
            active: Some(14),
            regular: Some(8),
            top_platform: Some("linkedin".into()),
            ..profile(20)
        };
        let a = assess(&p);
        assert!(a.next_step.contains("inspect linkedin"), "{a:?}");
        let p = Profile {
            active: Some(14),
            regular: Some(8),
            inspected: true,
            contributors: Some(4),
            adopted: adopted(1),
            suggestion: Some("youtube".into()),
            ..profile(20)
        };
        assert!(assess(&p).next_step.starts_with("Try youtube"));
    }
}
