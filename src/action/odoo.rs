//! Odoo's configuration: pgfleet's keys set in place, and Odoo restarted
//! with the operator's command so it reconnects where they point.

use super::context::{ActionError, Context, STEP};
use crate::desired;
use crate::transport::shell_quote;

fn odoo<'a>(context: &'a Context<'_>) -> Result<&'a crate::spec::Odoo, ActionError> {
    context.environment.odoo.as_ref().ok_or_else(|| ActionError::Refused {
        address: context.address.to_string(),
        reason: "the environment has no `odoo:`".into(),
    })
}

/// Sets the database keys in `[options]`.
///
/// # Guarantees
/// Idempotent; every other line is kept. The file is rewritten in place
/// (its contents replaced, not the file), so the owner and mode Odoo needs
/// stay as they were. A missing file is an error: pgfleet does not write
/// Odoo's configuration from nothing.
pub async fn write_config(context: &Context<'_>) -> Result<(), ActionError> {
    let odoo = odoo(context)?;
    let Some(existing) = context.read(&odoo.host, &odoo.config).await? else {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!("Odoo's configuration {} does not exist on host `{}`", odoo.config.display(), odoo.host),
        });
    };
    let merged =
        desired::odoo::merge(&String::from_utf8_lossy(&existing), &desired::odoo::settings(context.environment));
    let path = shell_quote(&odoo.config.to_string_lossy());
    let command = format!(
        "umask 077 && t=$(mktemp {path}.pgfleet.XXXXXX) && cat > \"$t\" && cat \"$t\" > {path} && rm -f \"$t\""
    );
    context.run_with_input(&odoo.host, "write Odoo's configuration", &command, merged.as_bytes(), STEP).await?;
    Ok(())
}

/// Runs the operator's restart command.
pub async fn restart(context: &Context<'_>) -> Result<(), ActionError> {
    let odoo = odoo(context)?;
    let Some(command) = &odoo.restart else { return Ok(()) };
    context.run(&odoo.host, "restart Odoo", command, STEP).await?;
    Ok(())
}
