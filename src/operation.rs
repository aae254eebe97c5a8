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
    /// The point of no return (a promotion): once it has run, a failure
    /// goes forward — a rerun finishes the operation — and compensations
    /// that undo (restarting the old primary) are never run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub commits: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    pub address: Address,
    pub action: Action,
    /// It undoes the operation (restart the old primary): run only before
    /// the point of no return. Otherwise it releases something (RESUME)
    /// and runs on any failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
}

impl Operation {
    /// The compensations owed when step `failed` fails: those of every
    /// step up to and including it, latest first; once a committing step
    /// before it has run (`committed`), only those that release.
    pub fn compensations_for(&self, failed: usize, committed: bool) -> Vec<&Compensation> {
        self.steps
            .iter()
            .take(failed + 1)
            .rev()
            .flat_map(|step| step.on_failure.iter())
            .filter(|compensation| !(committed && compensation.undo))
            .collect()
    }

    /// The environment it acts in (every step acts in one).
    pub fn environment(&self) -> &str {
        self.steps.first().map_or("", |step| step.address.environment.as_str())
    }

    /// Whether step `index` comes after the point of no return.
    pub fn committed_before(&self, index: usize) -> bool {
        self.steps.iter().take(index).any(|step| step.commits)
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
                    undo: pooler == "r1",
                })
                .into_iter()
                .collect(),
            commits: member == "r1",
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
            let committed = operation.committed_before(failed);
            operation
                .compensations_for(failed, committed)
                .iter()
                .map(|undo| undo.address.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(0), ["prod.pooler.primary"]);
        assert_eq!(names(1), ["prod.pooler.r1", "prod.pooler.primary"]);
        // Past the point of no return (r1's step), what undoes is skipped.
        assert_eq!(names(2), ["prod.pooler.r2", "prod.pooler.primary"]);
    }
}
