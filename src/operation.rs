//! operation: an ordered list of steps across several resources, carried
//! by a plan, with what to run when a step fails — the shape of a
//! switchover (CHECKPOINT → PAUSE → stop → promote → repoint → RESUME),
//! where one failed step must not leave the poolers paused. Data only: the
//! planner builds operations, `apply` runs them step by step, journaling
//! operation id, step and payload so a killed operation resumes where it
//! stopped.

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::address::Address;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Stable for the plan that carries it, so a rerun of the same plan
    /// finds the steps already done in the journal.
    pub id: String,
    /// What it is, for people (`switchover prod to r1`).
    pub description: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The resource the step acts on.
    pub address: Address,
    pub action: Action,
    /// Run, in order, when this step or a later one fails, once this step
    /// has run (a RESUME for a PAUSE): the operation then stops with
    /// everything it paused released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Compensation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    pub address: Address,
    pub action: Action,
}

impl Operation {
    /// The compensations owed when step `failed` fails: those of every
    /// step up to and including it, latest first.
    pub fn compensations_for(&self, failed: usize) -> Vec<&Compensation> {
        self.steps.iter().take(failed + 1).rev().flat_map(|step| step.on_failure.iter()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(address: &str, member: &str, undo: Option<&str>) -> Step {
        Step {
            address: address.parse().unwrap(),
            action: Action::Stop { member: member.into() },
            on_failure: undo
                .map(|pooler| Compensation {
                    address: format!("prod.pooler.{pooler}").parse().unwrap(),
                    action: Action::StartPooler { pooler: pooler.into() },
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn compensations_come_latest_first_and_only_for_steps_that_ran() {
        let operation = Operation {
            id: "op".into(),
            description: "test".into(),
            steps: vec![
                step("prod.cluster.primary", "primary", Some("primary")),
                step("prod.replica.r1", "r1", Some("r1")),
                step("prod.replica.r2", "r2", Some("r2")),
            ],
        };
        let names = |failed| {
            operation.compensations_for(failed).iter().map(|undo| undo.address.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["prod.pooler.primary"]);
        assert_eq!(names(1), ["prod.pooler.r1", "prod.pooler.primary"]);
    }
}
