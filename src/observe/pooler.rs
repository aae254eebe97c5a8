//! A running PgBouncer, through its admin console: `SHOW DATABASES` and
//! `SHOW POOLS`. The console speaks only the simple query protocol.

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, SimpleQueryMessage};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerStatus {
    pub databases: Vec<PoolerDatabase>,
    pub pools: Vec<PoolRow>,
}

/// One entry of `SHOW DATABASES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerDatabase {
    pub name: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub pool_size: Option<u32>,
    pub pool_mode: Option<String>,
    pub paused: bool,
}

/// One entry of `SHOW POOLS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub clients_active: u32,
    pub clients_waiting: u32,
    pub servers_active: u32,
    pub servers_idle: u32,
    pub pool_mode: Option<String>,
}

/// Rows of a simple query as (column → text) lookups.
async fn rows(client: &Client, query: &str) -> Result<Vec<Vec<(String, Option<String>)>>, tokio_postgres::Error> {
    Ok(client
        .simple_query(query)
        .await?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(index, column)| (column.name().to_owned(), row.get(index).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

fn field<'a>(row: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    row.iter().find(|(column, _)| column == name).and_then(|(_, value)| value.as_deref())
}

fn number<T: std::str::FromStr>(row: &[(String, Option<String>)], name: &str) -> Option<T> {
    field(row, name).and_then(|value| value.parse().ok())
}

/// Reads both views in two simple queries.
pub async fn status(client: &Client) -> Result<PoolerStatus, tokio_postgres::Error> {
    let databases = rows(client, "SHOW DATABASES")
        .await?
        .iter()
        .map(|row| PoolerDatabase {
            name: field(row, "name").unwrap_or_default().to_owned(),
            host: field(row, "host").map(str::to_owned),
            port: number(row, "port"),
            database: field(row, "database").map(str::to_owned),
            pool_size: number(row, "pool_size"),
            pool_mode: field(row, "pool_mode").map(str::to_owned),
            paused: field(row, "paused") == Some("1"),
        })
        .collect();
    let pools = rows(client, "SHOW POOLS")
        .await?
        .iter()
        .map(|row| PoolRow {
            database: field(row, "database").unwrap_or_default().to_owned(),
            user: field(row, "user").unwrap_or_default().to_owned(),
            clients_active: number(row, "cl_active").unwrap_or(0),
            clients_waiting: number(row, "cl_waiting").unwrap_or(0),
            servers_active: number(row, "sv_active").unwrap_or(0),
            servers_idle: number(row, "sv_idle").unwrap_or(0),
            pool_mode: field(row, "pool_mode").map(str::to_owned),
        })
        .collect();
    Ok(PoolerStatus { databases, pools })
}
