//! pgfleet's block of the primary's pg_hba.conf: compared as written on
//! disk and as the server loaded it.

use super::{ChangeKind, DriftClass, Planner, Presence, Refusal, unified_diff};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired::{self, HbaLine};
use crate::observe::cluster::HbaRule;
use crate::placement::PRIMARY;
use crate::topology::Environment;

/// The managed hba rules as the server parsed them, in the same shape as
/// the desired ones.
fn observed_lines(rules: &[HbaRule], wanted: &[HbaLine]) -> Vec<HbaLine> {
    let mut lines: Vec<HbaLine> = rules
        .iter()
        .filter(|rule| rule.error.is_none())
        .filter_map(|rule| {
            let prefix = match rule.netmask.as_deref() {
                Some("255.255.255.255") => 32,
                Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff") => 128,
                _ => return None,
            };
            Some(HbaLine {
                kind: rule.kind.clone()?,
                database: rule.databases.as_ref()?.join(","),
                user: rule.users.as_ref()?.join(","),
                address: format!("{}/{prefix}", rule.address.as_ref()?),
                method: rule.method.clone()?,
            })
        })
        .filter(|line| wanted.contains(line))
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, presence: Presence<'_>) {
    let address = Address::new(&environment.id, Kind::Hba, "replication");
    let tunnel_source = match presence {
        Presence::Running(probe) if !probe.in_recovery => probe.session_source.as_deref(),
        _ => None,
    };
    let pooler_source = crate::placement::pooler(environment, crate::placement::PRIMARY)
        .and_then(|pooler| planner.observed.host_facts(&pooler.host)?.pooler(&pooler.layout.ini)?.source.as_deref());
    let wanted = desired::hba_lines(environment, &planner.topology.hosts, tunnel_source, pooler_source);
    let wanted_text: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let text = |lines: &[String]| lines.iter().map(|line| format!("{line}\n")).collect::<String>();
    match presence {
        Presence::Absent | Presence::Stopped => planner.change(
            DriftClass::Config,
            address,
            if matches!(presence, Presence::Absent) { ChangeKind::Create } else { ChangeKind::Update },
            "pg_hba.conf needs pgfleet's block",
            unified_diff("", &text(&wanted_text), "pg_hba.conf", "desired"),
            hba_actions(),
        ),
        Presence::Unknown => {}
        Presence::Running(probe) => {
            if probe.in_recovery {
                return;
            }
            let loaded = observed_lines(&probe.hba_rules, &wanted);
            let missing: Vec<String> =
                wanted.iter().filter(|line| !loaded.contains(line)).map(|line| normal(&line.to_string())).collect();
            // A server pgfleet does not run: its pg_hba.conf is not pgfleet's
            // to write; the rules must be loaded, however they got there.
            if !crate::placement::primary(environment).runtime().capabilities().edit_hba {
                if missing.is_empty() {
                    planner.no_op(address);
                } else {
                    planner.refuse(Refusal::HbaByHand { address: address.to_string(), lines: missing });
                }
                return;
            }
            // pgfleet owns only its block: lines outside it are the user's.
            // The block on disk must be the wanted one, and loaded.
            let primary = &environment.primary;
            let block = planner
                .observed
                .data_dir(&primary.host, &primary.data_dir)
                .and_then(|directory| directory.hba_block.clone())
                .unwrap_or_default();
            let not_loaded = missing.len();
            let same_block = block.iter().map(|line| normal(line)).eq(wanted_text.iter().map(|line| normal(line)));
            if same_block && not_loaded == 0 {
                planner.no_op(address);
                return;
            }
            let reason = if !same_block {
                "pgfleet's block in pg_hba.conf differs".to_owned()
            } else {
                format!("{not_loaded} rule(s) written but not loaded")
            };
            planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Update,
                reason,
                unified_diff(&text(&block), &text(&wanted_text), "pg_hba.conf", "desired"),
                hba_actions(),
            );
        }
    }
}

/// pgfleet's block lives in the primary's pg_hba.conf (a base backup
/// copies it to each replica).
fn hba_actions() -> Vec<Action> {
    vec![Action::WriteHba { member: PRIMARY.into() }, Action::Reload { member: PRIMARY.into() }]
}

fn normal(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}
