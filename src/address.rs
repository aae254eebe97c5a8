//! Resource addresses: `ENV.KIND.NAME`, stable across plan output, JSON,
//! `--target`, `--replace` and state.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kinds of resource pgfleet manages, in the order ties are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Cluster,
    Role,
    Hba,
    Database,
    Slot,
    Tunnel,
    Replica,
    Pooler,
    Filestore,
    Odoo,
    Backup,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Cluster,
        Kind::Role,
        Kind::Hba,
        Kind::Database,
        Kind::Slot,
        Kind::Tunnel,
        Kind::Replica,
        Kind::Pooler,
        Kind::Filestore,
        Kind::Odoo,
        Kind::Backup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Role => "role",
            Kind::Hba => "hba",
            Kind::Database => "database",
            Kind::Slot => "slot",
            Kind::Tunnel => "tunnel",
            Kind::Replica => "replica",
            Kind::Pooler => "pooler",
            Kind::Filestore => "filestore",
            Kind::Odoo => "odoo",
            Kind::Backup => "backup",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    pub environment: String,
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(environment: &str, kind: Kind, name: &str) -> Self {
        Address { environment: environment.to_owned(), kind, name: name.to_owned() }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.environment, self.kind, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a resource address: write ENV.KIND.NAME, KIND one of cluster, role, hba, database, slot, tunnel, replica, pooler, filestore, backup"
)]
pub struct AddressError {
    text: String,
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || AddressError { text: text.to_owned() };
        let mut parts = text.splitn(3, '.');
        let (Some(environment), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(error());
        };
        let kind = Kind::ALL.into_iter().find(|candidate| candidate.as_str() == kind).ok_or_else(error)?;
        if environment.is_empty() || name.is_empty() {
            return Err(error());
        }
        Ok(Address::new(environment, kind, name))
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for text in ["prod.cluster.primary", "prod.slot.r1", "staging-2.pooler.r_1", "prod.database.prod"] {
            assert_eq!(text.parse::<Address>().unwrap().to_string(), text);
        }
        for text in ["prod", "prod.cluster", "prod.widget.x", ".cluster.primary", "prod.replica."] {
            assert!(text.parse::<Address>().is_err(), "{text}");
        }
    }
}
