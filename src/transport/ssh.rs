//! SSH to a managed host with russh: the host key is verified against
//! known_hosts before anything else is sent, then public-key auth from the
//! identity file (or the SSH agent). One session per host; every command is
//! a channel on it, collected or streamed through one path
//! (`SshSession::run`) that respects the channel's flow control.
//!
//! Must not: trust an unknown or changed host key, or put a secret on a
//! command line (secrets travel on stdin).

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::{self, Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{STREAM_CHUNK, StreamOutput, Tail, TransportError, expand_home, shell_quote};
use crate::topology::SshTarget;

/// How long connecting (TCP, key exchange, auth) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SshError {
    #[error("host `{host}` ({address}:{port}) presented an unknown host key {fingerprint}")]
    #[diagnostic(
        code(pgfleet::ssh::unknown_host_key),
        help(
            "verify the fingerprint with the host's administrator, then add the key to {known_hosts} \
             (e.g. `ssh-keyscan -p {port} {address} >> {known_hosts}`)"
        )
    )]
    UnknownHostKey { host: String, address: String, port: u16, fingerprint: String, known_hosts: String },

    #[error("host `{host}` ({address}:{port}) presented a host key that differs from line {line} of {known_hosts}")]
    #[diagnostic(
        code(pgfleet::ssh::host_key_changed),
        help(
            "if the host was reinstalled, remove the old key (`ssh-keygen -R '[{address}]:{port}' -f {known_hosts}`) \
             and add the new one after verifying it; otherwise someone may be intercepting the connection"
        )
    )]
    HostKeyChanged { host: String, address: String, port: u16, line: usize, known_hosts: String },

    #[error("cannot read known_hosts file {path} for host `{host}`")]
    #[diagnostic(code(pgfleet::ssh::known_hosts), help("set `ssh.known_hosts` to a readable file"))]
    KnownHosts { host: String, path: String, reason: String },

    #[error("host `{host}` ({address}:{port}) refused the key {identity} for user `{user}`")]
    #[diagnostic(
        code(pgfleet::ssh::auth),
        help("add the matching public key to ~{user}/.ssh/authorized_keys on the host, or set `ssh.identity_file`")
    )]
    AuthFailed { host: String, address: String, port: u16, user: String, identity: String },

    #[error("cannot load identity file {path} for host `{host}`")]
    #[diagnostic(code(pgfleet::ssh::identity), help("check `ssh.identity_file`: an unencrypted OpenSSH private key"))]
    Identity {
        host: String,
        path: String,
        #[source]
        source: Box<keys::Error>,
    },

    #[error("no SSH agent to authenticate to host `{host}` and no `identity_file` set")]
    #[diagnostic(code(pgfleet::ssh::agent), help("set `ssh.identity_file`, or start ssh-agent and add a key"))]
    NoAgent { host: String },

    #[error("cannot connect to host `{host}` at {address}:{port}")]
    #[diagnostic(code(pgfleet::ssh::connect), help("check that sshd runs on the host and listens on {address}:{port}"))]
    Connect {
        host: String,
        address: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },

    #[error("host `{host}` ({address}:{port}) did not answer within {} s", after.as_secs())]
    #[diagnostic(code(pgfleet::ssh::timeout), help("check the address, the port and any firewall on the way"))]
    Timeout { host: String, address: String, port: u16, after: Duration },

    #[error("SSH session with host `{host}` ({address}:{port}) failed")]
    #[diagnostic(code(pgfleet::ssh::protocol))]
    Protocol {
        host: String,
        address: String,
        port: u16,
        #[source]
        source: Box<russh::Error>,
    },

    #[error("command on host `{host}` did not finish within {} s", after.as_secs())]
    #[diagnostic(code(pgfleet::ssh::command_timeout))]
    CommandTimeout { host: String, after: Duration },
}

/// What the key check saw, kept aside because russh only learns "rejected".
#[derive(Debug, Clone)]
enum HostKeyVerdict {
    Unknown { fingerprint: String },
    Changed { line: usize },
    Unreadable { reason: String },
}

struct Verifier {
    address: String,
    port: u16,
    known_hosts: PathBuf,
    verdict: Arc<Mutex<Option<HostKeyVerdict>>>,
}

impl Verifier {
    fn record(&self, verdict: HostKeyVerdict) {
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            // Certificates are not trusted until pgfleet knows which authorities to trust.
            self.record(HostKeyVerdict::Unknown { fingerprint: "(certificate)".into() });
            return Ok(false);
        };
        match keys::check_known_hosts_path(&self.address, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.record(HostKeyVerdict::Unknown { fingerprint: key.fingerprint(HashAlg::Sha256).to_string() });
                Ok(false)
            }
            Err(keys::Error::KeyChanged { line }) => {
                self.record(HostKeyVerdict::Changed { line });
                Ok(false)
            }
            Err(error) => {
                self.record(HostKeyVerdict::Unreadable { reason: error.to_string() });
                Ok(false)
            }
        }
    }
}

/// An authenticated SSH session to one host.
pub struct SshSession {
    host: String,
    target: SshTarget,
    handle: Handle<Verifier>,
}

impl SshSession {
    /// Connects, verifies the host key and authenticates, within
    /// `CONNECT_TIMEOUT`.
    pub async fn connect(host: &str, target: &SshTarget) -> Result<Self, SshError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_untimed(host, target)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                host: host.to_owned(),
                address: target.address.clone(),
                port: target.port,
                after: CONNECT_TIMEOUT,
            }),
        }
    }

    async fn connect_untimed(host: &str, target: &SshTarget) -> Result<Self, SshError> {
        let known_hosts = expand_home(&target.known_hosts);
        let recorded =
            keys::known_hosts::known_host_keys_path(&target.address, target.port, &known_hosts).map_err(|error| {
                SshError::KnownHosts {
                    host: host.to_owned(),
                    path: known_hosts.display().to_string(),
                    reason: error.to_string(),
                }
            })?;
        let config = client::Config {
            preferred: russh::Preferred {
                key: Cow::Owned(host_key_preference(recorded.iter().map(|(_, key)| key))),
                ..Default::default()
            },
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(15)),
            ..Default::default()
        };
        let verdict = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            address: target.address.clone(),
            port: target.port,
            known_hosts: known_hosts.clone(),
            verdict: verdict.clone(),
        };

        let protocol = |source: russh::Error| {
            let recorded = verdict.lock().ok().and_then(|slot| slot.clone());
            let (host, address, port) = (host.to_owned(), target.address.clone(), target.port);
            let known_hosts = known_hosts.display().to_string();
            match (recorded, source) {
                (Some(HostKeyVerdict::Unknown { fingerprint }), _) => {
                    SshError::UnknownHostKey { host, address, port, fingerprint, known_hosts }
                }
                (Some(HostKeyVerdict::Changed { line }), _) => {
                    SshError::HostKeyChanged { host, address, port, line, known_hosts }
                }
                (Some(HostKeyVerdict::Unreadable { reason }), _) => {
                    SshError::KnownHosts { host, path: known_hosts, reason }
                }
                (None, russh::Error::IO(source)) => SshError::Connect { host, address, port, source },
                (None, source) => SshError::Protocol { host, address, port, source: Box::new(source) },
            }
        };

        let mut handle = client::connect(Arc::new(config), (target.address.as_str(), target.port), verifier)
            .await
            .map_err(protocol)?;

        let authenticated = match &target.identity_file {
            Some(path) => {
                let path = expand_home(path);
                let key = keys::load_secret_key(&path, None).map_err(|source| SshError::Identity {
                    host: host.to_owned(),
                    path: path.display().to_string(),
                    source: Box::new(source),
                })?;
                let hash = handle.best_supported_rsa_hash().await.map_err(protocol)?.flatten();
                handle
                    .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
                    .map_err(protocol)?
                    .success()
            }
            None => authenticate_with_agent(host, target, &mut handle).await?,
        };
        if !authenticated {
            return Err(SshError::AuthFailed {
                host: host.to_owned(),
                address: target.address.clone(),
                port: target.port,
                user: target.user.clone(),
                identity: target
                    .identity_file
                    .as_deref()
                    .map_or_else(|| "(from the SSH agent)".to_owned(), |path| path.display().to_string()),
            });
        }
        Ok(SshSession { host: host.to_owned(), target: target.clone(), handle })
    }

    fn protocol_error(&self, source: russh::Error) -> SshError {
        SshError::Protocol {
            host: self.host.clone(),
            address: self.target.address.clone(),
            port: self.target.port,
            source: Box::new(source),
        }
    }

    /// The command as sshd runs it: through `sudo` to the `become` user
    /// when one is set.
    fn remote_command(&self, command: &str) -> String {
        match &self.target.become_user {
            Some(user) => format!("sudo -n -u {} -- sh -c {}", shell_quote(user), shell_quote(command)),
            None => command.to_owned(),
        }
    }

    /// Runs a shell command on its own channel, feeding it from `stdin` and
    /// copying its output to `stdout` while both flow, keeping the last
    /// `stderr_limit` bytes of stderr, all within `timeout`.
    async fn run(
        &self,
        command: &str,
        stdin: &mut (dyn AsyncRead + Send + Unpin),
        stdout: &mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> Result<StreamOutput, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || TransportError::Ssh(SshError::CommandTimeout { host: self.host.clone(), after: timeout });
        let command = self.remote_command(command);
        let open = async {
            let channel = self.handle.channel_open_session().await.map_err(|e| self.protocol_error(e))?;
            channel.exec(true, command.as_bytes()).await.map_err(|e| self.protocol_error(e))?;
            Ok::<_, SshError>(channel)
        };
        let channel = tokio::time::timeout_at(deadline, open).await.map_err(|_| timed_out())??;
        let (mut read, write) = channel.split();
        match tokio::time::timeout_at(deadline, pump(&self.host, &mut read, &write, stdin, stdout, stderr_limit)).await
        {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => {
                abandon(read, write).await;
                Err(error)
            }
            Err(_) => {
                abandon(read, write).await;
                Err(timed_out())
            }
        }
    }

    /// A channel running the server's subsystem `name` (`sftp`), as a byte
    /// stream, on this verified and authenticated session. No `become`:
    /// a subsystem runs as the login user.
    pub async fn subsystem(&self, name: &str) -> Result<Box<dyn super::Stream>, SshError> {
        let channel = self.handle.channel_open_session().await.map_err(|e| self.protocol_error(e))?;
        channel.request_subsystem(true, name).await.map_err(|e| self.protocol_error(e))?;
        Ok(Box::new(channel.into_stream()))
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// The host keys pgfleet's known_hosts records for `target`, as OpenSSH
/// public-key text: what a helper on another host pins when it connects to
/// this one (the same keys pgfleet itself verifies).
pub fn pinned_host_keys(host: &str, target: &SshTarget) -> Result<Vec<String>, SshError> {
    let known_hosts = expand_home(&target.known_hosts);
    let unreadable = |reason: String| SshError::KnownHosts {
        host: host.to_owned(),
        path: known_hosts.display().to_string(),
        reason,
    };
    let recorded = keys::known_hosts::known_host_keys_path(&target.address, target.port, &known_hosts)
        .map_err(|error| unreadable(error.to_string()))?;
    recorded.iter().map(|(_, key)| key.to_openssh().map_err(|error| unreadable(error.to_string()))).collect()
}

/// Host key algorithms in the order to ask for them: those known_hosts
/// holds for this host first, so a server with several keys presents the
/// one that can be verified (an RSA entry needs an RSA algorithm offered).
fn host_key_preference<'a>(recorded: impl Iterator<Item = &'a PublicKey>) -> Vec<Algorithm> {
    let defaults = russh::Preferred::DEFAULT.key.to_vec();
    let mut preference: Vec<Algorithm> = Vec::new();
    for key in recorded {
        let candidates: Vec<Algorithm> = match key.algorithm() {
            Algorithm::Rsa { .. } => vec![
                Algorithm::Rsa { hash: Some(keys::HashAlg::Sha512) },
                Algorithm::Rsa { hash: Some(keys::HashAlg::Sha256) },
            ],
            other => vec![other],
        };
        for candidate in candidates {
            if !preference.contains(&candidate) {
                preference.push(candidate);
            }
        }
    }
    for algorithm in defaults {
        if !preference.contains(&algorithm) {
            preference.push(algorithm);
        }
    }
    preference
}

async fn authenticate_with_agent(
    host: &str,
    target: &SshTarget,
    handle: &mut Handle<Verifier>,
) -> Result<bool, SshError> {
    let no_agent = || SshError::NoAgent { host: host.to_owned() };
    let mut agent = keys::agent::client::AgentClient::connect_env().await.map_err(|_| no_agent())?;
    let identities = agent.request_identities().await.map_err(|_| no_agent())?;
    let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
    for identity in identities {
        let keys::agent::AgentIdentity::PublicKey { key, .. } = identity else { continue };
        if let Ok(result) = handle.authenticate_publickey_with(&target.user, key, hash, &mut agent).await
            && result.success()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Why feeding a channel stopped early.
enum Feed {
    /// The caller's input failed.
    Input(std::io::Error),
    /// The channel or the session closed: the command (or the connection)
    /// ended, and the read side says how.
    Closed,
}

/// Sends `stdin` to the command a chunk at a time, each chunk only once
/// the channel's window has room for it, then the end of input.
async fn feed(write: &ChannelWriteHalf<client::Msg>, stdin: &mut (dyn AsyncRead + Send + Unpin)) -> Result<(), Feed> {
    let mut buffer = vec![0; STREAM_CHUNK];
    loop {
        let read = stdin.read(&mut buffer).await.map_err(Feed::Input)?;
        if read == 0 {
            break;
        }
        write.data_bytes(buffer[..read].to_vec()).await.map_err(|_| Feed::Closed)?;
    }
    write.eof().await.map_err(|_| Feed::Closed)
}

/// Moves a command's input and output at the same time until the channel
/// closes. Both directions must move together: russh hands received data
/// to a bounded queue per channel and stops reading the connection while
/// it is full, so output left unread would also hold back the window
/// updates that sending input waits for.
async fn pump(
    host: &str,
    read: &mut ChannelReadHalf,
    write: &ChannelWriteHalf<client::Msg>,
    stdin: &mut (dyn AsyncRead + Send + Unpin),
    stdout: &mut (dyn AsyncWrite + Send + Unpin),
    stderr_limit: usize,
) -> Result<StreamOutput, TransportError> {
    let io = |action| move |source| TransportError::Io { host: host.to_owned(), action, source };
    let mut stderr = Tail::new(stderr_limit);
    let mut stdout_bytes = 0u64;
    let mut status = None;
    let feeding = feed(write, stdin);
    tokio::pin!(feeding);
    let mut fed = false;
    loop {
        tokio::select! {
            result = &mut feeding, if !fed => {
                fed = true;
                match result {
                    Ok(()) | Err(Feed::Closed) => {}
                    Err(Feed::Input(source)) => return Err(io("read the input streamed to a command")(source)),
                }
            }
            message = read.wait() => match message {
                // The channel closed: the command is over, and feeding it
                // (which may wait for a window that will never open) stops.
                None => break,
                Some(ChannelMsg::Data { data }) => {
                    stdout.write_all(&data).await.map_err(io("write the output of a command"))?;
                    stdout_bytes += data.len() as u64;
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.push(&data),
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status as i32),
                Some(ChannelMsg::ExitSignal { .. }) => status = Some(-1),
                Some(_) => {}
            }
        }
    }
    stdout.flush().await.map_err(io("write the output of a command"))?;
    Ok(StreamOutput {
        status: status.unwrap_or(-1),
        stderr: stderr.bytes,
        stderr_dropped: stderr.dropped,
        stdout_bytes,
    })
}

/// Stops a command whose run is being given up (a timeout, a failed
/// stream). Dropping the read side first frees russh's session loop if it
/// waits to queue more output for this channel; then sshd is asked to kill
/// the command's process group and the channel is closed. Best effort,
/// and brief: the session may be what failed.
async fn abandon(read: ChannelReadHalf, write: ChannelWriteHalf<client::Msg>) {
    drop(read);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = write.signal(Sig::KILL).await;
        let _ = write.close().await;
    })
    .await;
}

impl super::Remote for SshSession {
    fn host(&self) -> &str {
        &self.host
    }

    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> super::Pending<'a, StreamOutput> {
        Box::pin(self.run(command, stdin, stdout, stderr_limit, timeout))
    }

    fn connect_tcp<'a>(&'a self, address: &'a str, port: u16) -> super::Pending<'a, Box<dyn super::Stream>> {
        Box::pin(async move {
            let channel = self
                .handle
                .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
                .await
                .map_err(|source| self.protocol_error(source))?;
            Ok(Box::new(channel.into_stream()) as Box<dyn super::Stream>)
        })
    }

    fn connect_command<'a>(&'a self, command: &'a str) -> super::Pending<'a, Box<dyn super::Stream>> {
        Box::pin(async move {
            let command = self.remote_command(command);
            let channel = self.handle.channel_open_session().await.map_err(|e| self.protocol_error(e))?;
            channel.exec(true, command.as_bytes()).await.map_err(|e| self.protocol_error(e))?;
            Ok(Box::new(channel.into_stream()) as Box<dyn super::Stream>)
        })
    }
}
