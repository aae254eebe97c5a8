//! PgBouncer's files as pgfleet writes them: the ini, and the userlist of
//! SCRAM verifiers. Pure.

use std::collections::BTreeMap;

use crate::placement::PoolerPlacement;
use crate::topology::{Environment, Pooler};

/// Size of the session-mode pool for the `postgres` database (Odoo's bus
/// holds one LISTEN connection per worker).
pub const SESSION_POOL_SIZE: u32 = 5;

/// PgBouncer's ini for one pooler. Deterministic, so a diff shows only what
/// changed.
pub fn pgbouncer_ini(environment: &Environment, pooler: &Pooler, place: &PoolerPlacement) -> String {
    let database = &environment.database.name;
    format!(
        ";; Managed by pgfleet for {environment}: changes here are overwritten.\n\
         [databases]\n\
         {database} = host={cluster_address} port={cluster_port} dbname={database}\n\
         postgres = host={cluster_address} port={cluster_port} dbname=postgres pool_mode=session pool_size={session}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = {address}\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {userlist}\n\
         admin_users = postgres\n\
         stats_users = postgres\n\
         pool_mode = {pool_mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = {max_client_conn}\n\
         reserve_pool_size = {reserve_pool_size}\n\
         reserve_pool_timeout = {reserve_pool_timeout}\n\
         ignore_startup_parameters = extra_float_digits\n\
         pidfile = {pidfile}\n\
         logfile = {logfile}\n",
        environment = environment.id,
        address = place.address,
        cluster_address = place.cluster_address,
        cluster_port = place.cluster_port,
        session = SESSION_POOL_SIZE,
        port = place.port,
        pool_mode = pooler.pool_mode,
        pool_size = pooler.pool_size,
        max_client_conn = pooler.max_client_conn,
        reserve_pool_size = pooler.reserve_pool_size,
        reserve_pool_timeout = pooler.reserve_pool_timeout,
        pidfile = place.layout.pid_file.display(),
        userlist = place.layout.userlist.display(),
        logfile = place.layout.log_file.display(),
    )
}

/// The roles in a pooler's userlist: the application owner, and `postgres`
/// for the admin console.
pub fn userlist_roles(environment: &Environment) -> [String; 2] {
    [environment.database.owner.clone(), "postgres".to_owned()]
}

/// PgBouncer's userlist: each role's SCRAM verifier exactly as
/// `pg_authid.rolpassword` holds it, so PgBouncer can authenticate clients
/// and pass their SCRAM keys through to the server.
pub fn userlist(verifiers: &BTreeMap<String, String>) -> String {
    verifiers.iter().map(|(name, verifier)| format!("\"{}\" \"{}\"\n", name.replace('"', "\"\""), verifier)).collect()
}

/// The ini keys whose change PgBouncer cannot take with RELOAD.
pub const POOLER_RESTART_KEYS: [&str; 5] =
    ["listen_addr", "listen_port", "unix_socket_dir", "pidfile", "max_client_conn"];
