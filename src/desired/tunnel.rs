//! The SSH tunnel of a replica with `connect: ssh_tunnel`, and the
//! filestore mirror's SSH: where the replica's side keeps its files, the
//! program kept running on the replica's host (`ssh -N -L`), the lines
//! authorized on the primary's host, and the pinned known_hosts. Pure.

use std::path::{Path, PathBuf};

use crate::placement;
use crate::topology::{Environment, Host, Replica, SshTarget, Transport};
use crate::transport::shell_quote;

/// Where the tunnel's local end listens on the replica's host: the
/// replica's own address when that is a loopback one (hosts sharing a
/// machine keep apart), else 127.0.0.1 — never an address the network
/// reaches.
pub fn local_end(replica: &Replica) -> (String, u16) {
    let loopback = replica.address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let address = if loopback { replica.address.clone() } else { "127.0.0.1".to_owned() };
    (address, replica.tunnel_port)
}

/// The directory of a helper of `replica` on its host, beside pgfleet's
/// files of the replica (which leave with the replica; this one leaves
/// with the helper): `HOME-tunnel`, `HOME-filestore`.
pub fn helper_dir(environment: &Environment, replica: &Replica, what: &str) -> PathBuf {
    let home = placement::replica(environment, replica).layout.home;
    PathBuf::from(format!("{}-{what}", home.display()))
}

/// The helper's unit name: `pgfleet-tunnel-prod-r1`.
pub fn unit_name(what: &str, environment: &str, replica: &str) -> String {
    format!("pgfleet-{what}-{environment}-{replica}")
}

/// The SSH login of a host, as the service user (whose authorized_keys
/// pgfleet edits): `None` for a host reached without SSH.
pub fn ssh_login(host: &Host) -> Option<(&SshTarget, &str)> {
    match &host.transport {
        Transport::Ssh(target) => Some((target, target.become_user.as_deref().unwrap_or(&target.user))),
        Transport::Local => None,
    }
}

/// The private key of a helper on the replica's host (generated there; it
/// never leaves it).
pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("id_ed25519")
}

/// The options every helper's `ssh` runs with: only its key, only the
/// pinned host key, never a prompt.
pub fn ssh_options(dir: &Path, port: u16) -> String {
    format!(
        "-F /dev/null -i {key} -o IdentitiesOnly=yes -o IdentityAgent=none -o UserKnownHostsFile={known} \
         -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -p {port}",
        key = shell_quote(&key_file(dir).to_string_lossy()),
        known = shell_quote(&dir.join("known_hosts").to_string_lossy()),
    )
}

/// The program the tunnel's supervisor keeps running on the replica's
/// host. Keep-alives end a silent connection within ~10 s; a forward that
/// cannot listen ends ssh at once, so the supervisor retries.
pub fn tunnel_program(address: &str, environment: &Environment, replica: &Replica, primary: &Host) -> Option<String> {
    let (target, user) = ssh_login(primary)?;
    let dir = helper_dir(environment, replica, "tunnel");
    let (local_address, local_port) = local_end(replica);
    let destination = &environment.primary;
    Some(format!(
        "#!/bin/sh\n# pgfleet {address}: {local_address}:{local_port} here -> {}:{} on host `{}`, through its sshd\n\
         exec ssh -N -T {options} -o ExitOnForwardFailure=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=2 \
         -L {local_address}:{local_port}:{}:{} {}\n",
        destination.address,
        destination.port,
        destination.host,
        destination.address,
        destination.port,
        shell_quote(&format!("{user}@{}", target.address)),
        options = ssh_options(&dir, target.port),
    ))
}

/// The authorized_keys line of the tunnel's key on the primary's host:
/// port forwarding to the primary's address and port only, no shell.
pub fn tunnel_authorization(environment: &Environment, public_key: &str) -> String {
    format!(
        "restrict,port-forwarding,permitopen=\"{}:{}\",command=\"/bin/false\" {}",
        environment.primary.address,
        environment.primary.port,
        public_key.trim()
    )
}

/// The markers of a resource's block in authorized_keys.
pub fn authorization_markers(address: &str) -> (String, String) {
    (format!("# BEGIN pgfleet {address}"), format!("# END pgfleet {address}"))
}

/// The known_hosts line pinning `keys` (OpenSSH text) for `target`.
pub fn known_hosts(target: &SshTarget, keys: &[String]) -> String {
    let name = if target.port == 22 { target.address.clone() } else { format!("[{}]:{}", target.address, target.port) };
    keys.iter().map(|key| format!("{name} {}\n", key.trim())).collect()
}

/// The file holding pgfleet's authorized blocks on a host, as a shell
/// word: the configured one, or the service user's
/// `~/.ssh/authorized_keys`.
pub fn authorized_keys_file(host: &Host) -> String {
    match &host.authorized_keys {
        Some(path) => shell_quote(&path.to_string_lossy()),
        None => "\"$(getent passwd \"$(id -un)\" | cut -d: -f6)/.ssh/authorized_keys\"".to_owned(),
    }
}

/// Replaces (or, with `line` empty, removes) the block of `address` in
/// the host's authorized_keys, under a lock, keeping every other line.
pub fn edit_authorization(host: &Host, address: &str, line: &str) -> String {
    let (begin, end) = authorization_markers(address);
    let block = if line.is_empty() { String::new() } else { format!("{begin}\n{line}\n{end}\n") };
    format!(
        r#"set -e
f={file}
mkdir -p "$(dirname "$f")"
[ -e "$f" ] || {{ touch "$f"; chmod 600 "$f"; }}
exec 9<"$f"
flock 9
kept=$(awk -v b={begin} -v e={end} '$0==b{{skip=1;next}} $0==e{{skip=0;next}} !skip' "$f")
{{ [ -n "$kept" ] && printf '%s\n' "$kept"; printf '%s' {block}; }} > "$f.pgfleet-new" 2>/dev/null && cat "$f.pgfleet-new" > "$f" && rm -f "$f.pgfleet-new" || {{ {{ [ -n "$kept" ] && printf '%s\n' "$kept"; printf '%s' {block}; }} > "$f"; }}
"#,
        file = authorized_keys_file(host),
        begin = shell_quote(&begin),
        end = shell_quote(&end),
        block = shell_quote(&block),
    )
}

/// Prints, base64 on one line each, the line inside the block of each
/// address (`auth.N=`), for observation.
pub fn read_authorizations(host: &Host, addresses: &[String]) -> String {
    let mut script = format!("f={}\n", authorized_keys_file(host));
    for (index, address) in addresses.iter().enumerate() {
        let (begin, end) = authorization_markers(address);
        script.push_str(&format!(
            "[ -r \"$f\" ] && echo \"auth.{index}=$(awk -v b={} -v e={} '$0==b{{on=1;next}} $0==e{{on=0}} on' \"$f\" | base64 -w0)\"\n",
            shell_quote(&begin),
            shell_quote(&end),
        ));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(replica_address: &str) -> crate::topology::Topology {
        let yaml = format!(
            "version: 1\nhosts:\n  a: {{ address: 10.0.0.1, ssh: {{ user: ubuntu, become: postgres, port: 2222 }} }}\n  b: {{ address: 10.0.0.2 }}\nenvironments:\n  - id: e\n    primary: {{ host: a, address: 127.0.0.1, port: 5433, data_dir: /p, tuning: none }}\n    replicas:\n      - {{ name: r1, host: b, address: {replica_address}, data_dir: /r1, connect: ssh_tunnel }}\n"
        );
        crate::config::load::parse("t.yaml", yaml).unwrap().resolve_in(Path::new("/")).unwrap()
    }

    /// The local end never listens where the network reaches it, and the
    /// program forwards to the primary's loopback as the service user,
    /// with only its own key and the pinned host key.
    #[test]
    fn the_tunnel_listens_on_loopback_and_forwards_to_the_primary_only() {
        let topology = topology("10.0.0.2");
        let environment = &topology.environments[0];
        let replica = &environment.replicas[0];
        assert_eq!(local_end(replica), ("127.0.0.1".to_owned(), 15432));
        let program = tunnel_program("e.tunnel.r1", environment, replica, &topology.hosts["a"]).unwrap();
        assert!(program.contains("-L 127.0.0.1:15432:127.0.0.1:5433 postgres@10.0.0.1"), "{program}");
        assert!(program.contains("-p 2222") && program.contains("StrictHostKeyChecking=yes"), "{program}");
        assert!(program.contains("ExitOnForwardFailure=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=2"));
        assert_eq!(
            tunnel_authorization(environment, "ssh-ed25519 AAAA pgfleet\n"),
            "restrict,port-forwarding,permitopen=\"127.0.0.1:5433\",command=\"/bin/false\" ssh-ed25519 AAAA pgfleet"
        );
        let loopback = topology_with_loopback();
        assert_eq!(local_end(&loopback.environments[0].replicas[0]).0, "127.0.0.9");
        assert!(tunnel_program("e.tunnel.r1", environment, replica, &topology.hosts["b"]).is_some());
    }

    fn topology_with_loopback() -> crate::topology::Topology {
        topology("127.0.0.9")
    }

    #[test]
    fn known_hosts_names_the_port_only_when_it_is_not_22() {
        let target = |port| SshTarget {
            address: "10.0.0.1".into(),
            port,
            user: "postgres".into(),
            identity_file: None,
            known_hosts: "/k".into(),
            become_user: None,
        };
        assert_eq!(known_hosts(&target(22), &["ssh-ed25519 AAAA".into()]), "10.0.0.1 ssh-ed25519 AAAA\n");
        assert_eq!(known_hosts(&target(2222), &["ssh-ed25519 AAAA".into()]), "[10.0.0.1]:2222 ssh-ed25519 AAAA\n");
    }

    /// The authorized_keys edit, its read-back and the mirror's job parse
    /// as POSIX shell.
    #[test]
    fn the_scripts_parse_as_shell() {
        let topology = topology("10.0.0.2");
        let environment = &topology.environments[0];
        let filestore = crate::topology::Filestore {
            path: "/srv/odoo filestore".into(),
            mirror_to: vec!["r1".into()],
            mirror_path: "/srv/mirror".into(),
            every: crate::spec::Duration::from_seconds(300),
            delete: true,
        };
        let host = &topology.hosts["a"];
        let job = crate::desired::filestore::job(
            "e.filestore.r1",
            environment,
            &filestore,
            &environment.replicas[0],
            host,
            true,
        )
        .unwrap();
        assert!(job.contains("--delete") && job.contains("--rsync-path='sudo -n rsync'"), "{job}");
        for script in [
            edit_authorization(host, "e.tunnel.r1", "restrict ssh-ed25519 AAAA"),
            edit_authorization(host, "e.tunnel.r1", ""),
            read_authorizations(host, &["e.tunnel.r1".into()]),
            job,
        ] {
            let status = std::process::Command::new("sh").args(["-n", "-c", &script]).status().unwrap();
            assert!(status.success(), "{script}");
        }
    }
}
