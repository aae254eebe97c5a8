//! SQL-level actions on the primary: roles, the database, replication
//! slots.

use super::context::{ActionError, Context, identifier, literal};
use crate::scram;

/// Creates a login role, or fixes an existing one (LOGIN, REPLICATION, and
/// the password when its stored verifier does not match).
///
/// # Guarantees
/// Idempotent; the password travels only as a SCRAM verifier made here,
/// and an unchanged password is not rewritten (the stored verifier is
/// re-derived with its own salt).
pub async fn ensure_role(context: &Context<'_>, name: &str, replication: bool) -> Result<(), ActionError> {
    let password = context.role_password(name).await?;
    let client = context.superuser(&context.primary()).await?;
    let row = client
        .query_opt("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&name])
        .await
        .map_err(context.query_error("read role"))?;
    let attributes = if replication { "LOGIN REPLICATION" } else { "LOGIN" };
    let statement = match row {
        None => {
            format!("CREATE ROLE {} {attributes} PASSWORD {}", identifier(name), literal(&scram::verifier(&password)))
        }
        Some(row) => {
            let stored: Option<String> = row.get(0);
            let mut statement = format!("ALTER ROLE {} {attributes}", identifier(name));
            if !stored.is_some_and(|stored| scram::matches(&stored, &password)) {
                statement.push_str(&format!(" PASSWORD {}", literal(&scram::verifier(&password))));
            }
            statement
        }
    };
    client.batch_execute(&statement).await.map_err(context.query_error("create or alter role"))
}

/// Creates the database owned by `owner`, or hands it to `owner`.
///
/// # Guarantees
/// Idempotent.
pub async fn ensure_database(context: &Context<'_>, name: &str, owner: &str) -> Result<(), ActionError> {
    let client = context.superuser(&context.primary()).await?;
    let current: Option<String> = client
        .query_opt("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(context.query_error("read database"))?
        .map(|row| row.get(0));
    let statement = match current {
        None => format!("CREATE DATABASE {} OWNER {} ENCODING 'UTF8'", identifier(name), identifier(owner)),
        Some(current) if current == owner => return Ok(()),
        Some(_) => format!("ALTER DATABASE {} OWNER TO {}", identifier(name), identifier(owner)),
    };
    client.batch_execute(&statement).await.map_err(context.query_error("create database"))
}

/// Creates a physical slot that reserves WAL from now on.
///
/// # Guarantees
/// Idempotent: an existing physical slot of that name is kept.
pub async fn create_slot(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let client = context.superuser(&context.primary()).await?;
    client
        .execute(
            "SELECT pg_create_physical_replication_slot($1, true) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&name],
        )
        .await
        .map_err(context.query_error("create slot"))?;
    Ok(())
}

/// Drops a slot that no replica is using.
///
/// # Guarantees
/// Idempotent: a missing slot is fine. Refuses an active slot.
pub async fn drop_slot(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let client = context.superuser(&context.primary()).await?;
    let active: Option<bool> = client
        .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&name])
        .await
        .map_err(context.query_error("read slot"))?
        .map(|row| row.get(0));
    match active {
        None => Ok(()),
        Some(true) => Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!("slot {name} is in use by a running standby"),
        }),
        Some(false) => {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&name])
                .await
                .map_err(context.query_error("drop slot"))?;
            Ok(())
        }
    }
}
