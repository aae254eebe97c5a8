//! A replica's libpq passfile: the replication password for the primary,
//! and nothing else. Pure.

use crate::topology::{Environment, Replica};

/// A libpq passfile field: `\` and `:` escaped.
fn passfile_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// A replica's passfile: the replication password for the primary (where
/// the replica reaches it: its address, or its tunnel's local end), and
/// nothing else.
pub fn passfile(environment: &Environment, replica: &Replica, password: &crate::secrets::Secret) -> String {
    let (host, port) = super::upstream(environment, replica);
    format!(
        "{}:{}:*:{}:{}\n",
        passfile_field(&host),
        port,
        passfile_field(&environment.replication.user),
        passfile_field(password.expose())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_fields_escape_colons_and_backslashes() {
        assert_eq!(passfile_field(r"a:b\c"), r"a\:b\\c");
    }
}
