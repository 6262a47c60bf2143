//! Roles and the four-eyes rule.
//!
//! Closing a case or filing a SAR needs the approval of a second user who holds the `reviewer`
//! role and did not work the case. No role, `admin` included, relaxes either condition: roles
//! only ever add permissions, and the worker check does not look at roles at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ReviewError;
use super::case::{HitDisposition, Outcome};

/// A named user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Works cases (maker).
    Analyst,
    /// Approves or rejects close and SAR requests (checker).
    Reviewer,
    /// Re-reviews sampled auto-clears blind.
    Qa,
    /// Assigns cases and manages queues.
    Supervisor,
    /// Manages users. Grants no approval right.
    Admin,
}

impl UserRole {
    /// All roles.
    pub const ALL: [UserRole; 5] = [
        UserRole::Analyst,
        UserRole::Reviewer,
        UserRole::Qa,
        UserRole::Supervisor,
        UserRole::Admin,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Analyst => "analyst",
            UserRole::Reviewer => "reviewer",
            UserRole::Qa => "qa",
            UserRole::Supervisor => "supervisor",
            UserRole::Admin => "admin",
        }
    }

    /// Parses a role name; the error names the field `roles`.
    pub fn parse(s: &str) -> Result<UserRole, ReviewError> {
        UserRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| ReviewError::Invalid {
                field: "roles",
                message: format!("unknown role {s:?} (analyst, reviewer, qa, supervisor, admin)"),
            })
    }

    /// Parses a comma-separated list of roles (at least one).
    pub fn parse_list(s: &str) -> Result<BTreeSet<UserRole>, ReviewError> {
        let roles = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(UserRole::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if roles.is_empty() {
            return Err(ReviewError::Invalid {
                field: "roles",
                message: "at least one role is required".into(),
            });
        }
        Ok(roles)
    }
}

/// Whether a user with `roles` may work cases (transition, disposition hits, comment).
pub fn can_work(roles: &BTreeSet<UserRole>) -> bool {
    roles.contains(&UserRole::Analyst) || roles.contains(&UserRole::Supervisor)
}

/// Requires a role for an action.
pub fn require(
    roles: &BTreeSet<UserRole>,
    needed: UserRole,
    action: &'static str,
) -> Result<(), ReviewError> {
    if roles.contains(&needed) {
        Ok(())
    } else {
        Err(ReviewError::MissingRole {
            needed: needed.as_str(),
            action,
        })
    }
}

/// Requires a user who may work cases.
pub fn require_worker(roles: &BTreeSet<UserRole>, action: &'static str) -> Result<(), ReviewError> {
    if can_work(roles) {
        Ok(())
    } else {
        Err(ReviewError::MissingRole {
            needed: "analyst",
            action,
        })
    }
}

/// The four-eyes check for approving (or rejecting) a case's pending request: `approver` must
/// hold `reviewer` and must not be among `workers` (everyone who assigned themselves, worked,
/// dispositioned hits, requested the close or SAR, or reopened the case).
pub fn check_approval(
    approver: &str,
    approver_roles: &BTreeSet<UserRole>,
    workers: &BTreeSet<String>,
) -> Result<(), ReviewError> {
    if workers.contains(approver) {
        return Err(ReviewError::ApproverWorkedCase(approver.to_string()));
    }
    require(approver_roles, UserRole::Reviewer, "approve")
}

/// The engine dispositions an outcome of `false_positive` overrides.
const SEVERE: [&str; 3] = ["ESCALATE_L3", "ESCALATE_SAR", "BLOCK_TRANSACTION"];

/// Checks a close request: a non-blank rationale, a disposition for every screening hit
/// (`hits` are their entry ids), no `false_positive` on a hit dispositioned `match`, and a
/// reason when the outcome overrides a severe automated decision (`engine_disposition`).
pub fn check_close_request(
    outcome: Outcome,
    rationale: &str,
    hits: &[String],
    dispositions: &BTreeMap<String, HitDisposition>,
    engine_disposition: Option<&str>,
    override_reason: Option<&str>,
) -> Result<(), ReviewError> {
    if rationale.trim().is_empty() {
        return Err(ReviewError::MissingRationale);
    }
    for hit in hits {
        if !dispositions.contains_key(hit) {
            return Err(ReviewError::UndispositionedHit(hit.clone()));
        }
    }
    if outcome == Outcome::FalsePositive
        && dispositions.values().any(|d| *d == HitDisposition::Match)
    {
        return Err(ReviewError::Invalid {
            field: "outcome",
            message: "false_positive contradicts a screening hit dispositioned `match`".into(),
        });
    }
    let overrides = matches!(outcome, Outcome::FalsePositive | Outcome::Inconclusive)
        && engine_disposition.is_some_and(|d| SEVERE.contains(&d));
    if overrides && override_reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(ReviewError::OverrideNeedsReason {
            outcome: outcome.as_str().into(),
            disposition: engine_disposition.unwrap_or_default().into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[UserRole]) -> BTreeSet<UserRole> {
        r.iter().copied().collect()
    }

    fn set(users: &[&str]) -> BTreeSet<String> {
        users.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn approver_must_differ_from_worker() {
        let workers = set(&["alice", "bob"]);
        let reviewer = roles(&[UserRole::Reviewer]);
        for worker in ["alice", "bob"] {
            let e = check_approval(worker, &reviewer, &workers).unwrap_err();
            assert_eq!(e, ReviewError::ApproverWorkedCase(worker.into()));
        }
        assert!(check_approval("carol", &reviewer, &workers).is_ok());
        // A second user without the reviewer role cannot approve either.
        let e = check_approval("dave", &roles(&[UserRole::Analyst]), &workers).unwrap_err();
        assert!(matches!(
            e,
            ReviewError::MissingRole {
                needed: "reviewer",
                ..
            }
        ));
    }

    #[test]
    fn admin_cannot_bypass_four_eyes() {
        let all: BTreeSet<UserRole> = UserRole::ALL.into_iter().collect();
        // Holding every role does not let a worker approve its own work.
        let e = check_approval("root", &all, &set(&["root"])).unwrap_err();
        assert_eq!(e, ReviewError::ApproverWorkedCase("root".into()));
        // Admin (and supervisor) without reviewer cannot approve someone else's work.
        let admin = roles(&[UserRole::Admin, UserRole::Supervisor]);
        assert!(check_approval("root", &admin, &set(&["alice"])).is_err());
        // And there is no transition into a terminal state other than approve.
        use super::super::case::{CaseAction, CaseState};
        for a in [
            CaseAction::StartReview,
            CaseAction::Escalate,
            CaseAction::RequestClose {
                outcome: Outcome::FalsePositive,
            },
            CaseAction::RequestSar,
            CaseAction::Reject,
            CaseAction::Reopen,
        ] {
            for s in [CaseState::Open, CaseState::InReview, CaseState::Escalated] {
                assert!(!s.apply(a).is_ok_and(|n| n.is_terminal()), "{s:?} {a:?}");
            }
        }
    }

    #[test]
    fn closing_needs_every_hit_dispositioned() {
        let hits = vec!["SDN-1".to_string(), "SDN-2".to_string()];
        let mut d = BTreeMap::new();
        d.insert("SDN-1".to_string(), HitDisposition::NoMatch);
        let fp = Outcome::FalsePositive;
        assert_eq!(
            check_close_request(fp, "looked at it", &hits, &d, None, None),
            Err(ReviewError::UndispositionedHit("SDN-2".into()))
        );
        d.insert("SDN-2".to_string(), HitDisposition::Unsure);
        assert_eq!(
            check_close_request(fp, "  ", &hits, &d, None, None),
            Err(ReviewError::MissingRationale)
        );
        assert!(check_close_request(fp, "different DOB", &hits, &d, None, None).is_ok());
        // Overriding a block needs a reason.
        let e =
            check_close_request(fp, "r", &hits, &d, Some("BLOCK_TRANSACTION"), None).unwrap_err();
        assert!(e.to_string().starts_with("override_reason"), "{e}");
        assert!(
            check_close_request(
                fp,
                "r",
                &hits,
                &d,
                Some("BLOCK_TRANSACTION"),
                Some("DOB differs")
            )
            .is_ok()
        );
        // A confirmed match cannot be closed as a false positive.
        d.insert("SDN-2".to_string(), HitDisposition::Match);
        assert!(check_close_request(fp, "r", &hits, &d, None, None).is_err());
        assert!(
            check_close_request(Outcome::TruePositiveNoSar, "r", &hits, &d, None, None).is_ok()
        );
    }

    #[test]
    fn roles_parse_and_name_the_field() {
        let r = UserRole::parse_list("analyst, reviewer").unwrap();
        assert_eq!(r.len(), 2);
        assert!(
            UserRole::parse_list("")
                .unwrap_err()
                .to_string()
                .starts_with("roles")
        );
        assert!(
            UserRole::parse("root")
                .unwrap_err()
                .to_string()
                .starts_with("roles")
        );
    }
}
