//! The plan as text (like Terraform's), JSON (versioned) and Markdown (for
//! a pull-request comment). Rendering only: no decisions here.

use std::fmt::Write as _;

use super::{ChangeKind, Plan};

use crate::printer::Palette;

fn symbol(kind: ChangeKind) -> (&'static str, &'static str) {
    match kind {
        ChangeKind::Create => ("+", "32"),
        ChangeKind::Update => ("~", "33"),
        ChangeKind::Replace => ("-/+", "35"),
        ChangeKind::Delete => ("-", "31"),
        ChangeKind::NoOp => (" ", "0"),
    }
}

pub fn text(plan: &Plan, color: bool) -> String {
    let palette = Palette { on: color };
    let mut out = String::new();
    for unreachable in &plan.unreachable {
        let _ = writeln!(
            out,
            "{} host {} could not be observed: {}",
            palette.paint("31", "!"),
            unreachable.host,
            unreachable.reason
        );
        if let Some(help) = &unreachable.help {
            let _ = writeln!(out, "  help: {help}");
        }
    }
    if !plan.unreachable.is_empty() {
        out.push('\n');
    }
    for change in plan.changes() {
        let (mark, code) = symbol(change.action);
        let _ = writeln!(
            out,
            "{} {} ({}; disruption: {})",
            palette.paint(code, mark),
            palette.paint("1", &change.address.to_string()),
            change.action,
            change.disruption
        );
        let _ = writeln!(out, "    reason: {}", change.reason);
        if let Some(rpo) = &change.rpo {
            let _ = writeln!(out, "    data loss: {rpo}");
        }
        for action in &change.actions {
            let _ = writeln!(out, "    - {}", action.describe());
        }
        if let Some(diff) = &change.diff {
            for line in diff.lines() {
                let painted = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => palette.paint("32", line),
                    Some('-') if !line.starts_with("---") => palette.paint("31", line),
                    _ => line.to_owned(),
                };
                let _ = writeln!(out, "      {painted}");
            }
        }
        out.push('\n');
    }
    out.push_str(&operations_text(plan, &palette));
    if let Some(quota) = &plan.quota {
        out.push_str("Quota (used / total):\n");
        for row in quota.rows() {
            let _ = writeln!(
                out,
                "  {:<5} {:>8} / {:<8} {}",
                row.resource.to_string(),
                row.resource.format(row.used),
                row.resource.format(row.total),
                row.resource.unit()
            );
        }
        out.push('\n');
    }
    for warning in &plan.warnings {
        let place = warning.address.as_ref().map(|address| format!("{address}: ")).unwrap_or_default();
        let _ = writeln!(out, "{} {place}{}", palette.paint("33", "warning:"), warning.message);
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    if plan.is_empty() && !plan.unreachable.is_empty() {
        out.push_str("No changes in what could be observed; the hosts above were not.\n");
    } else if plan.is_empty() {
        out.push_str("No changes. The hosts match the configuration.\n");
    } else {
        let (create, update, replace, delete) = plan.summary();
        let _ = writeln!(out, "Plan: {create} to add, {update} to change, {replace} to replace, {delete} to destroy.");
    }
    out
}

/// Each operation: its steps in order, and what runs if one fails.
fn operations_text(plan: &Plan, palette: &Palette) -> String {
    let mut out = String::new();
    for operation in &plan.operations {
        let _ = writeln!(out, "{} operation {} ({})", palette.paint("35", "»"), operation.description, operation.id);
        for (index, step) in operation.steps.iter().enumerate() {
            let _ = writeln!(out, "    {}. {}: {}", index + 1, step.address, step.action.describe());
            for undo in &step.on_failure {
                let _ =
                    writeln!(out, "       if this or a later step fails: {}: {}", undo.address, undo.action.describe());
            }
        }
        out.push('\n');
    }
    out
}

pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    text
}

pub fn markdown(plan: &Plan) -> String {
    let mut out = String::from("### pgfleet plan\n\n");
    let (create, update, replace, delete) = plan.summary();
    if plan.is_empty() && !plan.unreachable.is_empty() {
        out.push_str("**No changes** in what could be observed (see the hosts below).\n\n");
    } else if plan.is_empty() {
        out.push_str("**No changes.** The hosts match the configuration.\n\n");
    } else {
        let _ = writeln!(
            out,
            "**Plan:** {create} to add, {update} to change, {replace} to replace, {delete} to destroy.\n"
        );
        out.push_str("| | resource | change | disruption | reason |\n|---|---|---|---|---|\n");
        for change in plan.changes() {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} | {} |",
                symbol(change.action).0,
                change.address,
                change.action,
                change.disruption,
                change.reason.replace('|', "\\|")
            );
        }
        out.push('\n');
        for change in plan.changes() {
            let _ = writeln!(out, "<details><summary><code>{}</code>: {}</summary>\n", change.address, change.action);
            for action in &change.actions {
                let _ = writeln!(out, "- {}", action.describe());
            }
            if let Some(diff) = &change.diff {
                let _ = write!(out, "\n```diff\n{diff}```\n");
            }
            out.push_str("\n</details>\n\n");
        }
        if !plan.operations.is_empty() {
            let _ = write!(out, "```\n{}```\n\n", operations_text(plan, &Palette { on: false }));
        }
    }
    if let Some(quota) = &plan.quota {
        out.push_str("| quota | used | total |\n|---|---|---|\n");
        for row in quota.rows() {
            let unit = row.resource.unit();
            let _ = writeln!(
                out,
                "| {} | {} {unit} | {} {unit} |",
                row.resource,
                row.resource.format(row.used),
                row.resource.format(row.total)
            );
        }
        out.push('\n');
    }
    for warning in &plan.warnings {
        let place = warning.address.as_ref().map(|address| format!("`{address}`: ")).unwrap_or_default();
        let _ = writeln!(out, "> ⚠️ {place}{}", warning.message);
    }
    for unreachable in &plan.unreachable {
        let _ = writeln!(out, "> ❌ host `{}` could not be observed: {}", unreachable.host, unreachable.reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::operation::{Compensation, Operation, Step};

    #[test]
    fn an_operation_is_shown_step_by_step_with_what_runs_on_failure() {
        let pooler: crate::address::Address = "prod.pooler.primary".parse().unwrap();
        let plan = Plan {
            format_version: crate::plan::FORMAT_VERSION,
            resource_changes: Vec::new(),
            quota: None,
            warnings: Vec::new(),
            unreachable: Vec::new(),
            fingerprint: String::new(),
            notes: Vec::new(),
            operations: vec![Operation {
                id: "op-7".into(),
                description: "move prod's primary".into(),
                steps: vec![Step {
                    address: pooler.clone(),
                    action: Action::StopPooler { pooler: "primary".into(), and_config: false },
                    on_failure: vec![Compensation {
                        address: pooler,
                        action: Action::StartPooler { pooler: "primary".into() },
                        undo: false,
                    }],
                    commits: false,
                }],
            }],
            environments: Vec::new(),
        };
        let shown = text(&plan, false);
        assert!(
            shown.contains("» operation move prod's primary (op-7)\n    1. prod.pooler.primary: stop PgBouncer\n"),
            "{shown}"
        );
        assert!(shown.contains("if this or a later step fails: prod.pooler.primary: start PgBouncer"), "{shown}");
        assert!(!shown.contains("No changes"), "a plan with an operation is not empty: {shown}");
        assert!(markdown(&plan).contains("1. prod.pooler.primary: stop PgBouncer"));
    }
}
