//! The case state machine.
//!
//! ```text
//! open ──start_review──> in_review ──request_close(outcome)──> pending_approval ──approve──> closed(outcome)
//!   │                      │  ^  └──request_sar──────────────> pending_approval ──approve──> sar_filed
//!   └──escalate──> escalated ─┘  └────────────── reject ──────────────┘
//! closed | sar_filed ──reopen──> reopened ──start_review──> in_review
//! ```
//!
//! There is no action that closes a case or files a SAR without going through
//! `pending_approval` and an `approve` by a second user (see [`super::four_eyes`]).

use serde::{Deserialize, Serialize};

use super::ReviewError;

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Suspicious, and a SAR was (or will be) filed.
    TruePositiveSar,
    /// Suspicious, but no SAR is warranted.
    TruePositiveNoSar,
    /// Not suspicious.
    FalsePositive,
    /// Could not be determined.
    Inconclusive,
}

impl Outcome {
    /// All outcomes.
    pub const ALL: [Outcome; 4] = [
        Outcome::TruePositiveSar,
        Outcome::TruePositiveNoSar,
        Outcome::FalsePositive,
        Outcome::Inconclusive,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::TruePositiveSar => "true_positive_sar",
            Outcome::TruePositiveNoSar => "true_positive_no_sar",
            Outcome::FalsePositive => "false_positive",
            Outcome::Inconclusive => "inconclusive",
        }
    }

    /// Parses a snake_case name; the error names the field `outcome`.
    pub fn parse(s: &str) -> Result<Outcome, ReviewError> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| ReviewError::Invalid {
                field: "outcome",
                message: format!(
                    "unknown outcome {s:?} (true_positive_sar, true_positive_no_sar, false_positive, inconclusive)"
                ),
            })
    }
}

/// An analyst's disposition of one screening hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HitDisposition {
    /// The hit is the customer.
    Match,
    /// The hit is not the customer.
    NoMatch,
    /// Could not be decided.
    Unsure,
}

impl HitDisposition {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HitDisposition::Match => "match",
            HitDisposition::NoMatch => "no_match",
            HitDisposition::Unsure => "unsure",
        }
    }

    /// Parses a snake_case name; the error names the field `disposition`.
    pub fn parse(s: &str) -> Result<HitDisposition, ReviewError> {
        match s {
            "match" => Ok(HitDisposition::Match),
            "no_match" => Ok(HitDisposition::NoMatch),
            "unsure" => Ok(HitDisposition::Unsure),
            _ => Err(ReviewError::Invalid {
                field: "disposition",
                message: format!("unknown hit disposition {s:?} (match, no_match, unsure)"),
            }),
        }
    }
}

/// What a case waiting for approval asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingRequest {
    /// Close with this outcome.
    Close {
        /// The requested outcome.
        outcome: Outcome,
    },
    /// File a SAR.
    FileSar,
}

/// Where a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CaseState {
    /// Opened from an escalated decision; nobody has started.
    Open,
    /// Someone is working it.
    InReview,
    /// Sent to a senior investigator.
    Escalated,
    /// Waiting for a second user's approval of a close or a SAR filing.
    PendingApproval {
        /// What is to be approved.
        request: PendingRequest,
    },
    /// Closed with an outcome (approved).
    Closed {
        /// The approved outcome.
        outcome: Outcome,
    },
    /// A SAR was filed (approved).
    SarFiled,
    /// Reopened after a close, a SAR filing (continuing activity) or a QA miss.
    Reopened,
}

impl CaseState {
    /// snake_case name of the state (without its data), used for filtering.
    pub fn name(&self) -> &'static str {
        match self {
            CaseState::Open => "open",
            CaseState::InReview => "in_review",
            CaseState::Escalated => "escalated",
            CaseState::PendingApproval { .. } => "pending_approval",
            CaseState::Closed { .. } => "closed",
            CaseState::SarFiled => "sar_filed",
            CaseState::Reopened => "reopened",
        }
    }

    /// Whether the case is finished (closed or SAR filed).
    pub fn is_terminal(&self) -> bool {
        matches!(self, CaseState::Closed { .. } | CaseState::SarFiled)
    }

    /// The outcome, once closed (a filed SAR is `true_positive_sar`).
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            CaseState::Closed { outcome } => Some(*outcome),
            CaseState::SarFiled => Some(Outcome::TruePositiveSar),
            _ => None,
        }
    }

    /// Applies `action`; the error says which action was refused in which state.
    pub fn apply(self, action: CaseAction) -> Result<CaseState, ReviewError> {
        use CaseAction as A;
        use CaseState as S;
        let next = match (self, action) {
            (S::Open | S::Escalated | S::Reopened, A::StartReview) => S::InReview,
            (S::Open | S::InReview, A::Escalate) => S::Escalated,
            (S::InReview, A::RequestClose { outcome }) => S::PendingApproval {
                request: PendingRequest::Close { outcome },
            },
            (S::InReview, A::RequestSar) => S::PendingApproval {
                request: PendingRequest::FileSar,
            },
            (S::PendingApproval { request }, A::Approve) => match request {
                PendingRequest::Close { outcome } => S::Closed { outcome },
                PendingRequest::FileSar => S::SarFiled,
            },
            (S::PendingApproval { .. }, A::Reject) => S::InReview,
            (S::Closed { .. } | S::SarFiled, A::Reopen) => S::Reopened,
            (state, action) => {
                return Err(ReviewError::InvalidTransition {
                    state: state.name().into(),
                    action: action.name().into(),
                });
            }
        };
        Ok(next)
    }
}

/// Something a user does to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CaseAction {
    /// Start (or resume) working the case.
    StartReview,
    /// Hand the case to a senior investigator.
    Escalate,
    /// Ask for approval to close with an outcome.
    RequestClose {
        /// The proposed outcome.
        outcome: Outcome,
    },
    /// Ask for approval to file a SAR.
    RequestSar,
    /// Approve the pending request (four-eyes checked separately).
    Approve,
    /// Send the pending request back to review.
    Reject,
    /// Reopen a finished case.
    Reopen,
}

impl CaseAction {
    /// snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            CaseAction::StartReview => "start_review",
            CaseAction::Escalate => "escalate",
            CaseAction::RequestClose { .. } => "request_close",
            CaseAction::RequestSar => "request_sar",
            CaseAction::Approve => "approve",
            CaseAction::Reject => "reject",
            CaseAction::Reopen => "reopen",
        }
    }

    /// Whether doing this makes the user one who "worked the case" (and so may not approve it).
    pub fn is_work(&self) -> bool {
        matches!(
            self,
            CaseAction::StartReview
                | CaseAction::Escalate
                | CaseAction::RequestClose { .. }
                | CaseAction::RequestSar
                | CaseAction::Reopen
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_state_machine_table() {
        use CaseAction as A;
        use CaseState as S;
        let fp = Outcome::FalsePositive;
        let close = PendingRequest::Close { outcome: fp };
        let states = [
            S::Open,
            S::InReview,
            S::Escalated,
            S::PendingApproval { request: close },
            S::PendingApproval {
                request: PendingRequest::FileSar,
            },
            S::Closed { outcome: fp },
            S::SarFiled,
            S::Reopened,
        ];
        let actions = [
            A::StartReview,
            A::Escalate,
            A::RequestClose { outcome: fp },
            A::RequestSar,
            A::Approve,
            A::Reject,
            A::Reopen,
        ];
        // Every allowed (state, action) pair and where it leads; every other pair is refused.
        let allowed: Vec<(S, A, S)> = vec![
            (S::Open, A::StartReview, S::InReview),
            (S::Open, A::Escalate, S::Escalated),
            (S::InReview, A::Escalate, S::Escalated),
            (
                S::InReview,
                A::RequestClose { outcome: fp },
                S::PendingApproval { request: close },
            ),
            (
                S::InReview,
                A::RequestSar,
                S::PendingApproval {
                    request: PendingRequest::FileSar,
                },
            ),
            (S::Escalated, A::StartReview, S::InReview),
            (
                S::PendingApproval { request: close },
                A::Approve,
                S::Closed { outcome: fp },
            ),
            (
                S::PendingApproval { request: close },
                A::Reject,
                S::InReview,
            ),
            (
                S::PendingApproval {
                    request: PendingRequest::FileSar,
                },
                A::Approve,
                S::SarFiled,
            ),
            (
                S::PendingApproval {
                    request: PendingRequest::FileSar,
                },
                A::Reject,
                S::InReview,
            ),
            (S::Closed { outcome: fp }, A::Reopen, S::Reopened),
            (S::SarFiled, A::Reopen, S::Reopened),
            (S::Reopened, A::StartReview, S::InReview),
        ];
        let mut checked = 0;
        for s in states {
            for a in actions {
                let expected = allowed
                    .iter()
                    .find(|(fs, fa, _)| *fs == s && *fa == a)
                    .map(|t| t.2);
                match (s.apply(a), expected) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{s:?} + {a:?}"),
                    (Err(e), None) => {
                        assert!(e.to_string().contains(a.name()), "{e}");
                        assert!(e.to_string().contains(s.name()), "{e}");
                    }
                    (got, want) => panic!("{s:?} + {a:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, states.len() * actions.len());
        // No path reaches a terminal state except through pending_approval + approve.
        for (from, a, to) in &allowed {
            if to.is_terminal() {
                assert!(matches!(from, S::PendingApproval { .. }) && *a == A::Approve);
            }
        }
    }

    #[test]
    fn states_round_trip_as_json() {
        let s = CaseState::PendingApproval {
            request: PendingRequest::Close {
                outcome: Outcome::Inconclusive,
            },
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(
            j,
            r#"{"state":"pending_approval","request":{"kind":"close","outcome":"inconclusive"}}"#
        );
        assert_eq!(serde_json::from_str::<CaseState>(&j).unwrap(), s);
        assert!(
            Outcome::parse("nope")
                .unwrap_err()
                .to_string()
                .starts_with("outcome:")
        );
    }
}
