//! Why one change of a plan failed, kept typed up to the printer so the
//! user sees the cause chain and what to do, not a flattened string.
//!
//! Every message starts with the resource's address: the apply summary
//! lists the messages, and the printer renders each error in full.

use crate::action::ActionError;
use crate::address::Address;
use crate::state::StateError;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ApplyError {
    #[error("{address} failed at step: {step}")]
    #[diagnostic(
        code(pgfleet::apply::action),
        help(
            "fix the cause, then run `pgfleet apply` again: every step re-checks what is already done, \
             and the changes that depend on this one run then"
        )
    )]
    Action {
        address: Address,
        /// The action's one-line description, as the progress lines show it.
        step: String,
        #[source]
        #[diagnostic_source]
        source: ActionError,
    },

    #[error("{address}: cannot record its progress in the state")]
    #[diagnostic(
        code(pgfleet::apply::journal),
        help(
            "pgfleet stops a change whose steps it cannot record, so that a rerun knows what was done; \
             make the state file writable, then run `pgfleet apply` again"
        )
    )]
    Journal {
        address: Address,
        #[source]
        #[diagnostic_source]
        source: StateError,
    },

    #[error("{address}: environment `{environment}` is not in the configuration")]
    #[diagnostic(
        code(pgfleet::apply::environment),
        help(
            "the plan and the configuration disagree; if the plan was made from this configuration, \
             {}",
            crate::exit::REPORT
        )
    )]
    UnknownEnvironment { address: Address, environment: String },

    #[error("{}: a step of an operation failed, and undoing what it had done failed too", failed.address())]
    #[diagnostic(
        code(pgfleet::apply::not_undone),
        help(
            "the operation is half-way: see both causes, repair the second by hand (the journal in state lists \
             the steps that ran), then run `pgfleet apply` again"
        )
    )]
    NotUndone {
        #[source]
        failed: Box<ApplyError>,
        /// Why undoing failed, shown beside the first cause.
        #[related]
        undo: Vec<ApplyError>,
    },
}

impl ApplyError {
    /// The change that failed.
    pub fn address(&self) -> &Address {
        match self {
            ApplyError::Action { address, .. }
            | ApplyError::Journal { address, .. }
            | ApplyError::UnknownEnvironment { address, .. } => address,
            ApplyError::NotUndone { failed, .. } => failed.address(),
        }
    }

    /// For `map_err` on a state save while `address` is being changed.
    pub fn journal(address: &Address) -> impl FnOnce(StateError) -> Self + '_ {
        move |source| ApplyError::Journal { address: address.clone(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::TransportError;
    use crate::transport::ssh::SshError;

    #[test]
    fn a_failed_action_shows_its_address_step_cause_and_what_to_do() {
        let address: Address = "shop.replica.r1".parse().unwrap();
        let error = ApplyError::Action {
            address: address.clone(),
            step: "start PostgreSQL".into(),
            source: ActionError::Transport(TransportError::Ssh(SshError::NoAgent { host: "db2".into() })),
        };
        assert_eq!(error.address(), &address);
        let rendered = crate::printer::render(&error, false, 100);
        assert!(rendered.contains("shop.replica.r1 failed at step: start PostgreSQL"), "{rendered}");
        assert!(rendered.contains("no SSH agent to authenticate to host `db2`"), "{rendered}");
        assert!(rendered.contains("help: set `ssh.identity_file`"), "the cause keeps its own help: {rendered}");
        assert!(rendered.contains("run `pgfleet apply` again"), "{rendered}");
    }
}
