//! The RiskScoring agent: a 0-100 score with per-factor contributions.

use actix::{Actor, Context, Handler, ResponseFuture};

use super::agent::{guarded, stoppable};
use super::data_enrichment::DETERMINISTIC;
use crate::assessment::scoring::{RiskAssessment, ShadowScore, assess_with};
use crate::domain::AgentKind;
use crate::domain::policy::Thresholds;
use crate::domain::scorecard::Scorecard;
use crate::messages::scoring::Score;
use crate::messages::{StepMeta, StepReply, StepResult};
use crate::protocol::{RemoteSteps, StepInputs, call_remote};

/// The RiskScoring agent.
pub struct RiskScoring {
    /// Set when this agent is listed in `REMOTE_AGENTS`: its steps run on a worker, over RabbitMQ.
    remote: Option<std::sync::Arc<dyn RemoteSteps>>,
    thresholds: Thresholds,
    model: String,
    mailbox: usize,
    /// The transaction scorecard in force (`SCORECARD_PATH`), if any.
    scorecard: Option<std::sync::Arc<Scorecard>>,
    /// A challenger scored beside it (`SCORECARD_SHADOW_PATH`), if any; it never decides.
    shadow: Option<std::sync::Arc<Scorecard>>,
}

impl RiskScoring {
    /// An agent scoring with `thresholds`.
    pub fn new(thresholds: Thresholds, model: String, mailbox: usize) -> Self {
        Self {
            remote: None,
            thresholds,
            model,
            mailbox,
            scorecard: None,
            shadow: None,
        }
    }

    /// Also scores with `challenger` and journals its score beside the champion's.
    pub fn with_shadow(mut self, challenger: Option<std::sync::Arc<Scorecard>>) -> Self {
        self.shadow = challenger;
        self
    }

    /// Scores transaction alerts with `scorecard` instead of the rule points.
    pub fn with_scorecard(mut self, scorecard: Option<std::sync::Arc<Scorecard>>) -> Self {
        self.scorecard = scorecard;
        self
    }
}

impl RiskScoring {
    /// Hands this agent's steps to `remote` (a worker over RabbitMQ) instead of running them
    /// here; `None` keeps them local.
    pub fn with_remote(mut self, remote: Option<std::sync::Arc<dyn RemoteSteps>>) -> Self {
        self.remote = remote;
        self
    }
}

impl Actor for RiskScoring {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

stoppable!(RiskScoring);

impl Handler<Score> for RiskScoring {
    type Result = ResponseFuture<StepResult<RiskAssessment>>;

    fn handle(&mut self, msg: Score, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(remote) = &self.remote {
            let call = call_remote(
                remote.as_ref(),
                &msg.env,
                StepInputs {
                    facts: Some((*msg.facts).clone()),
                    ..Default::default()
                },
            );
            return guarded(AgentKind::RiskScoring, &msg.env, call);
        }
        let t = self.thresholds;
        let model = self.model.clone();
        let alert = msg.env.alert.clone();
        let facts = msg.facts;
        let scorecard = self.scorecard.clone();
        let shadow = self.shadow.clone();
        let work = async move {
            let mut output = assess_with(&alert, &facts, &t, scorecard.as_deref());
            if let Some(ch) = shadow {
                let s = assess_with(&alert, &facts, &t, Some(&ch));
                output.shadow = Some(ShadowScore {
                    version: ch.version.clone(),
                    score: s.score,
                    level: s.level,
                });
            }
            Ok(StepReply {
                output,
                meta: StepMeta {
                    provider: DETERMINISTIC.into(),
                    model,
                    ..Default::default()
                },
            })
        };
        guarded(AgentKind::RiskScoring, &msg.env, work)
    }
}
