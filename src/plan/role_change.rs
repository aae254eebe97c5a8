//! Moving the primary role, planned: the preflight checks of a switchover
//! and a failover (each refusal says which check failed, with the
//! numbers) and the operation that carries it out, with its compensations.
//! Pure: from the current topology (`roles::current`) and what was
//! observed.

use crate::action::Action;
use crate::address::{Address, Kind};
use crate::health::{self, Status};
use crate::observe::cluster::{ClusterProbe, lsn_bytes};
use crate::observe::{ClusterObservation, HostObservation, Observed, PoolerObservation};
use crate::operation::{Compensation, Operation, Step};
use crate::placement::PRIMARY;
use crate::spec::Connect;
use crate::state::{RoleChange, RoleChangeKind};
use crate::topology::{Environment, Replica, Topology};

/// Why a switchover or failover will not start. Nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoleRefusal {
    #[error("environment `{environment}` has no member `{member}` (its members: {known})")]
    UnknownMember { environment: String, member: String, known: String },
    #[error("`{member}` is the primary of environment `{environment}` already")]
    AlreadyPrimary { environment: String, member: String },
    #[error(
        "the member declared under `environments[{index}].primary` has no `name:`, and it needs one to be a standby"
    )]
    NeedsName { index: usize },
    #[error("{what}")]
    NotSupported { what: String },
    #[error("the primary `{member}` is not running as a writable primary: {seen}")]
    PrimaryNotWritable { member: String, seen: String },
    #[error("the candidate `{member}` is not streaming from the primary: {seen}")]
    CandidateNotStreaming { member: String, seen: String },
    #[error("the candidate `{member}` is on timeline {candidate}, the primary on {primary}")]
    TimelineMismatch { member: String, candidate: u32, primary: u32 },
    #[error(
        "the candidate `{member}` lags {bytes} bytes and {seconds:.1} s behind the primary, over `health.warning` ({limit_bytes} bytes, {limit_seconds} s)"
    )]
    Lagging { member: String, bytes: u64, seconds: f64, limit_bytes: u64, limit_seconds: u64 },
    #[error("the pooler {address} does not answer: {reason}")]
    PoolerUnreachable { address: String, reason: String },
    #[error("the old primary `{member}` is running and accepts writes")]
    OldPrimaryWritable { member: String },
    #[error("the old primary's host `{host}` cannot be reached ({reason}), so pgfleet cannot fence it")]
    OldPrimaryUnreachable { host: String, reason: String },
    #[error("no replica can take the role: {reasons}")]
    NoCandidate { reasons: String },
    #[error("`{member}` is not running as a primary ({seen}): there is no promotion to record")]
    NotPromoted { member: String, seen: String },
    #[error("`{member}` and the recorded primary `{primary}` both accept writes")]
    BothWritable { member: String, primary: String },
}

impl RoleRefusal {
    pub fn help(&self) -> &'static str {
        match self {
            RoleRefusal::UnknownMember { .. } => "name a member of the environment with --to",
            RoleRefusal::AlreadyPrimary { .. } => "nothing to do; `pgfleet status` shows the current primary",
            RoleRefusal::NeedsName { .. } => {
                "give it a name (`primary: { name: db1, ... }`) — nothing changes on the hosts — then run the \
                 switchover again"
            }
            RoleRefusal::NotSupported { .. } => {
                "move the role by hand for now, then record it with `failover --record-only`"
            }
            RoleRefusal::PrimaryNotWritable { .. } => {
                "a switchover moves the role from a running primary; for a lost primary use `pgfleet failover`"
            }
            RoleRefusal::CandidateNotStreaming { .. } | RoleRefusal::TimelineMismatch { .. } => {
                "run `pgfleet apply` until the candidate streams (`pgfleet status`), or choose another with --to"
            }
            RoleRefusal::Lagging { .. } => {
                "wait until it catches up (`pgfleet status`), or choose another candidate with --to"
            }
            RoleRefusal::PoolerUnreachable { .. } => {
                "the pooler must answer to pause and repoint it: start it (`pgfleet apply`), then run again"
            }
            RoleRefusal::OldPrimaryWritable { .. } => {
                "the primary works: move it without losing anything with `pgfleet switchover --to MEMBER`; to \
                 fail over anyway, pass --fence and pgfleet stops it first"
            }
            RoleRefusal::OldPrimaryUnreachable { .. } => {
                "make sure it is down (powered off, or its PostgreSQL stopped), then pass --old-primary-is-down: \
                 pgfleet records that you said so"
            }
            RoleRefusal::NoCandidate { .. } => "bring a replica back to streaming first (`pgfleet status`)",
            RoleRefusal::NotPromoted { .. } => "promote it first, or run `pgfleet failover` to have pgfleet do it",
            RoleRefusal::BothWritable { .. } => {
                "decide whose writes to keep, stop the other by hand, then run the command again"
            }
        }
    }
}

/// What a failover would lose, per candidate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub name: String,
    /// WAL position received, in bytes.
    pub received: Option<u64>,
    /// WAL the old primary had written that the candidate had not
    /// received (known only while the old primary runs).
    pub lost_bytes: Option<u64>,
    /// Seconds since the candidate's last replayed transaction.
    pub lost_seconds: Option<f64>,
}

/// A failover, planned: the operation, every candidate's bound, and how
/// the old primary is dealt with.
#[derive(Debug, Clone)]
pub struct Failover {
    pub operation: Operation,
    pub candidates: Vec<Candidate>,
    pub chosen: String,
    /// The old primary is stopped (and fenced) by the operation.
    pub fences: bool,
}

fn address(environment: &Environment, kind: Kind, name: &str) -> Address {
    Address::new(&environment.id, kind, name)
}

fn step(address: Address, action: Action) -> Step {
    Step { address, action, on_failure: Vec::new(), commits: false }
}

fn probe<'a>(
    observed: &'a Observed,
    environment: &Environment,
    kind: Kind,
    name: &str,
) -> Result<&'a ClusterProbe, String> {
    match observed.cluster(&address(environment, kind, name).to_string()) {
        Some(ClusterObservation::Running { probe }) => Ok(probe),
        Some(ClusterObservation::Unreachable { reason }) => Err(format!("it runs but SQL failed: {reason}")),
        _ => Err("it is not running".into()),
    }
}

fn environment_of<'a>(topology: &'a Topology, id: &str) -> Result<&'a Environment, RoleRefusal> {
    topology.environment(id).ok_or_else(|| RoleRefusal::UnknownMember {
        environment: id.to_owned(),
        member: String::new(),
        known: String::new(),
    })
}

/// The replica `to` of the environment, or why it cannot take the role.
fn taker<'a>(topology: &Topology, environment: &'a Environment, to: &str) -> Result<&'a Replica, RoleRefusal> {
    if environment.primary.name == to || to == PRIMARY && environment.primary.standby.is_none() {
        return Err(RoleRefusal::AlreadyPrimary { environment: environment.id.clone(), member: to.to_owned() });
    }
    let replica = environment.replicas.iter().find(|replica| replica.name == to).ok_or_else(|| {
        let known: Vec<&str> = std::iter::once(environment.primary.name.as_str())
            .chain(environment.replicas.iter().map(|replica| replica.name.as_str()))
            .collect();
        RoleRefusal::UnknownMember {
            environment: environment.id.clone(),
            member: to.to_owned(),
            known: known.join(", "),
        }
    })?;
    supported(topology, environment, Some(replica))?;
    Ok(replica)
}

/// What pgfleet does not move the role across yet, said up front.
fn supported(topology: &Topology, environment: &Environment, taker: Option<&Replica>) -> Result<(), RoleRefusal> {
    if environment.primary.standby.is_none() && environment.primary.name == PRIMARY {
        return Err(RoleRefusal::NeedsName { index: topology.environment_index(&environment.id) });
    }
    if let Some(replica) = environment.replicas.iter().find(|replica| replica.connect == Connect::SshTunnel) {
        return Err(RoleRefusal::NotSupported {
            what: format!(
                "replica `{}` streams through an SSH tunnel to the primary's host, and pgfleet does not move tunnels with the role yet",
                replica.name
            ),
        });
    }
    if let (Some(taker), Some(filestore)) = (taker, &environment.filestore)
        && filestore.mirror_to.contains(&taker.name)
    {
        return Err(RoleRefusal::NotSupported {
            what: format!("the filestore is mirrored to `{}`, which would become the primary", taker.name),
        });
    }
    for (member, runtime) in std::iter::once((&environment.primary.name, environment.primary.runtime))
        .chain(taker.map(|replica| (&replica.name, replica.runtime)))
    {
        if !crate::runtime::of(runtime).capabilities().manage_process {
            return Err(RoleRefusal::NotSupported {
                what: format!(
                    "`{member}` runs with `runtime: {}`, which pgfleet does not stop or start",
                    crate::runtime::of(runtime).name()
                ),
            });
        }
    }
    Ok(())
}

/// The steps that follow a promotion, in the new roles: the primary's
/// pooler follows it, the hba admits the members, and the old primary
/// rejoins (when its host can be reached).
fn after_promotion(
    environment: &Environment,
    taker: &str,
    giver: &str,
    giver_slot: &str,
    pooler: bool,
    rejoin: Option<bool>,
) -> Vec<Step> {
    // After a switchover the application's clients waited in PAUSE and
    // go on; after a failover they failed already, and the pool is reset.
    let application = rejoin != Some(false);
    let cluster = address(environment, Kind::Cluster, PRIMARY);
    let pooler_address = address(environment, Kind::Pooler, PRIMARY);
    let mut steps = Vec::new();
    if pooler {
        steps.push(step(pooler_address.clone(), Action::WritePoolerConfig { pooler: PRIMARY.into() }));
        steps.push(step(pooler_address.clone(), Action::ReloadPooler { pooler: PRIMARY.into() }));
        steps.push(step(pooler_address, Action::ResumePooler { pooler: PRIMARY.into(), sessions: true, application }));
    }
    steps.push(step(cluster.clone(), Action::WriteHba { member: PRIMARY.into() }));
    steps.push(step(cluster, Action::Reload { member: PRIMARY.into() }));
    if let Some(rewind) = rejoin {
        steps.push(step(address(environment, Kind::Slot, giver_slot), Action::CreateSlot { name: giver_slot.into() }));
        steps.push(step(address(environment, Kind::Replica, giver), Action::Rejoin { member: giver.into(), rewind }));
    }
    // After a failover the other standbys may hold WAL the new primary
    // never had (their upstream wrote on): each follows, rewound if it
    // must be. After a switchover they hold nothing more (checked), and
    // the plan for the new roles repoints them with a reload.
    if rejoin != Some(false) {
        for sibling in environment.replicas.iter().filter(|replica| replica.name != taker) {
            steps.push(step(
                address(environment, Kind::Slot, &sibling.slot),
                Action::CreateSlot { name: sibling.slot.clone() },
            ));
            steps.push(step(
                address(environment, Kind::Replica, &sibling.name),
                Action::Rejoin { member: sibling.name.clone(), rewind: true },
            ));
        }
    }
    steps
}

/// The slot the member handing the role to `to` will stream from, as a
/// standby.
fn giver_slot(environment: &Environment, to: &str) -> String {
    crate::roles::with_primary(environment, to)
        .and_then(|swapped| {
            swapped.replicas.iter().find(|replica| replica.name == environment.primary.name).map(|r| r.slot.clone())
        })
        .unwrap_or_else(|| crate::config::resolve::slot_name(&environment.primary.name))
}

/// A planned switchover of environment `id` to `to`, after checking that
/// it can lose nothing: the primary writable, the candidate streaming from
/// it on the same timeline within `health.warning`, every pooler answering.
pub fn switchover(
    topology: &Topology,
    observed: &Observed,
    id: &str,
    to: &str,
    operation_id: &str,
) -> Result<Operation, RoleRefusal> {
    let environment = environment_of(topology, id)?;
    let replica = taker(topology, environment, to)?;
    let giver = environment.primary.name.clone();
    let primary = probe(observed, environment, Kind::Cluster, PRIMARY)
        .map_err(|seen| RoleRefusal::PrimaryNotWritable { member: giver.clone(), seen })?;
    if primary.in_recovery {
        return Err(RoleRefusal::PrimaryNotWritable { member: giver, seen: "it is in recovery".into() });
    }
    let candidate = probe(observed, environment, Kind::Replica, to)
        .map_err(|seen| RoleRefusal::CandidateNotStreaming { member: to.into(), seen })?;
    let streaming = primary
        .senders
        .iter()
        .any(|sender| sender.application_name == to && sender.state.as_deref() == Some("streaming"));
    if !candidate.in_recovery || !streaming {
        let seen = if candidate.in_recovery {
            "the primary's pg_stat_replication shows no streaming sender for it".to_owned()
        } else {
            "it accepts writes itself".to_owned()
        };
        return Err(RoleRefusal::CandidateNotStreaming { member: to.into(), seen });
    }
    let candidate_timeline =
        candidate.receiver.as_ref().and_then(|receiver| receiver.received_timeline).unwrap_or(candidate.timeline);
    if candidate_timeline != primary.timeline {
        return Err(RoleRefusal::TimelineMismatch {
            member: to.into(),
            candidate: candidate_timeline,
            primary: primary.timeline,
        });
    }
    let health = health::assess_replica(environment, replica, observed, "");
    let warning = &environment.health.warning;
    if health.status != Status::Online || !health.streams_within(warning) {
        return Err(RoleRefusal::Lagging {
            member: to.into(),
            bytes: health.lag_bytes.unwrap_or(u64::MAX),
            seconds: health.lag_seconds.unwrap_or(f64::INFINITY),
            limit_bytes: warning.lag_bytes.bytes(),
            limit_seconds: warning.lag_seconds,
        });
    }
    for pooler in crate::placement::poolers(environment) {
        let pooler_address = address(environment, Kind::Pooler, &pooler.fronts).to_string();
        match observed.poolers.get(&pooler_address) {
            Some(PoolerObservation::Running { .. }) => {}
            Some(PoolerObservation::Unreachable { reason }) => {
                return Err(RoleRefusal::PoolerUnreachable { address: pooler_address, reason: reason.clone() });
            }
            None => {
                return Err(RoleRefusal::PoolerUnreachable {
                    address: pooler_address,
                    reason: "it is not running".into(),
                });
            }
        }
    }

    let cluster = address(environment, Kind::Cluster, PRIMARY);
    let candidate_address = address(environment, Kind::Replica, to);
    let pooler_address = address(environment, Kind::Pooler, PRIMARY);
    let pooled = environment.pooler.is_some();
    let mut steps = vec![
        step(candidate_address.clone(), Action::CopySecrets { member: to.into() }),
        step(cluster.clone(), Action::Checkpoint { member: PRIMARY.into() }),
    ];
    if pooled {
        let mut pause = step(pooler_address.clone(), Action::PausePooler { pooler: PRIMARY.into() });
        pause.on_failure.push(Compensation {
            address: pooler_address.clone(),
            action: Action::ResumePooler { pooler: PRIMARY.into(), sessions: false, application: false },
            undo: false,
        });
        steps.push(pause);
    }
    let mut stop = step(cluster.clone(), Action::Stop { member: PRIMARY.into() });
    stop.on_failure.push(Compensation {
        address: cluster.clone(),
        action: Action::StartUnlessPromoted { member: PRIMARY.into(), candidate: to.into() },
        undo: true,
    });
    steps.push(stop);
    steps.push(step(candidate_address.clone(), Action::WaitReplayed { member: to.into(), from: PRIMARY.into() }));
    let mut promote = step(candidate_address.clone(), Action::Promote { member: to.into() });
    promote.commits = true;
    steps.push(promote);
    let change = RoleChange {
        at: String::new(),
        from: giver.clone(),
        to: to.into(),
        why: RoleChangeKind::Switchover,
        lost_bytes: Some(0),
        lost_milliseconds: Some(0),
        statement: None,
    };
    steps.push(step(cluster, Action::RecordPrimary { change }));
    steps.extend(after_promotion(environment, to, &giver, &giver_slot(environment, to), pooled, Some(false)));
    Ok(Operation { id: operation_id.into(), description: format!("switchover {id} from {giver} to {to}"), steps })
}

/// What the old primary's host and server look like for a failover.
enum OldPrimary {
    /// Its host does not answer.
    Unreachable(String),
    /// Running and accepting writes, at this WAL position.
    Writable(Option<u64>),
    /// Its host answers; the server is down, or not a writable primary.
    Down,
}

fn old_primary(observed: &Observed, environment: &Environment) -> OldPrimary {
    if let Some(HostObservation::Unreachable { reason, .. }) = observed.hosts.get(&environment.primary.host) {
        return OldPrimary::Unreachable(reason.clone());
    }
    match probe(observed, environment, Kind::Cluster, PRIMARY) {
        Ok(probe) if !probe.in_recovery => OldPrimary::Writable(probe.lsn.as_deref().and_then(lsn_bytes)),
        _ => OldPrimary::Down,
    }
}

/// Every running standby that could take the role, freshest first (most
/// WAL received, then replayed), with what it would lose.
pub fn candidates(observed: &Observed, environment: &Environment) -> Vec<Candidate> {
    let written = match old_primary(observed, environment) {
        OldPrimary::Writable(lsn) => lsn,
        _ => None,
    };
    let mut found: Vec<(Candidate, u64)> = environment
        .replicas
        .iter()
        .filter_map(|replica| {
            let probe = probe(observed, environment, Kind::Replica, &replica.name).ok()?;
            if !probe.in_recovery {
                return None;
            }
            let standby = probe.standby.as_ref();
            let received = standby.and_then(|row| row.receive_lsn.as_deref()).and_then(lsn_bytes);
            let replayed = standby.and_then(|row| row.replay_lsn.as_deref()).and_then(lsn_bytes);
            let position = received.max(replayed);
            Some((
                Candidate {
                    name: replica.name.clone(),
                    received: position,
                    lost_bytes: written.zip(position).map(|(written, at)| written.saturating_sub(at)),
                    lost_seconds: standby.and_then(|row| row.replay_age_seconds),
                },
                replayed.unwrap_or(0),
            ))
        })
        .collect();
    found.sort_by(|(left, left_replayed), (right, right_replayed)| {
        right.received.cmp(&left.received).then(right_replayed.cmp(left_replayed))
    });
    found.into_iter().map(|(candidate, _)| candidate).collect()
}

/// A planned failover of environment `id`: fence the old primary first
/// (stop it when it runs, refusing when it must be stopped and `fence` is
/// not given, or when its host is unreachable and the operator did not
/// state it is down), promote the freshest replica (or `to`), repoint the
/// pooler, and rejoin the old primary when its host answers.
pub fn failover(
    topology: &Topology,
    observed: &Observed,
    id: &str,
    to: Option<&str>,
    fence: bool,
    old_primary_is_down: bool,
    operation_id: &str,
) -> Result<Failover, RoleRefusal> {
    let environment = environment_of(topology, id)?;
    supported(topology, environment, None)?;
    let giver = environment.primary.name.clone();
    let old = old_primary(observed, environment);
    let (fences, statement) = match &old {
        OldPrimary::Writable(_) if !fence => return Err(RoleRefusal::OldPrimaryWritable { member: giver }),
        OldPrimary::Writable(_) | OldPrimary::Down => (true, None),
        OldPrimary::Unreachable(reason) if !old_primary_is_down => {
            return Err(RoleRefusal::OldPrimaryUnreachable {
                host: environment.primary.host.clone(),
                reason: reason.clone(),
            });
        }
        OldPrimary::Unreachable(_) => (
            false,
            Some(format!(
                "the operator stated that the old primary `{giver}` on host `{}` is down (--old-primary-is-down)",
                environment.primary.host
            )),
        ),
    };
    let candidates = candidates(observed, environment);
    let chosen = match to {
        Some(to) => {
            taker(topology, environment, to)?;
            candidates.iter().find(|candidate| candidate.name == to).cloned().ok_or_else(|| {
                RoleRefusal::CandidateNotStreaming { member: to.into(), seen: "it is not running as a standby".into() }
            })?
        }
        None => candidates.first().cloned().ok_or_else(|| RoleRefusal::NoCandidate {
            reasons: environment
                .replicas
                .iter()
                .map(|replica| {
                    let seen = match probe(observed, environment, Kind::Replica, &replica.name) {
                        Ok(_) => "it accepts writes".to_owned(),
                        Err(seen) => seen,
                    };
                    format!("`{}`: {seen}", replica.name)
                })
                .collect::<Vec<_>>()
                .join("; "),
        })?,
    };
    let replica = taker(topology, environment, &chosen.name)?;
    let to = replica.name.clone();

    let cluster = address(environment, Kind::Cluster, PRIMARY);
    let candidate_address = address(environment, Kind::Replica, &to);
    let reachable = |host: &str| matches!(observed.hosts.get(host), Some(HostObservation::Reachable { .. }));
    let mut steps = Vec::new();
    if fences {
        steps.push(step(candidate_address.clone(), Action::CopySecrets { member: to.clone() }));
        steps.push(step(cluster.clone(), Action::Fence { member: PRIMARY.into() }));
    }
    let mut promote = step(candidate_address, Action::Promote { member: to.clone() });
    promote.commits = true;
    steps.push(promote);
    let change = RoleChange {
        at: String::new(),
        from: giver.clone(),
        to: to.clone(),
        why: RoleChangeKind::Failover,
        lost_bytes: chosen.lost_bytes,
        lost_milliseconds: chosen.lost_seconds.map(|seconds| (seconds * 1000.0).round() as u64),
        statement,
    };
    steps.push(step(cluster, Action::RecordPrimary { change }));
    let pooled = environment.pooler.as_ref().is_some_and(|pooler| reachable(&pooler.host));
    steps.extend(after_promotion(
        environment,
        &to,
        &giver,
        &giver_slot(environment, &to),
        pooled,
        fences.then_some(true),
    ));
    Ok(Failover {
        operation: Operation {
            id: operation_id.into(),
            description: format!("failover {id} from {giver} to {to}"),
            steps,
        },
        candidates,
        chosen: to,
        fences,
    })
}

/// Records a promotion done outside pgfleet: `to` runs as a primary, the
/// recorded one does not accept writes. The old primary rejoins as its
/// standby when its host answers (pg_rewind first).
pub fn record_only(
    topology: &Topology,
    observed: &Observed,
    id: &str,
    to: &str,
    operation_id: &str,
) -> Result<Operation, RoleRefusal> {
    let environment = environment_of(topology, id)?;
    let replica = taker(topology, environment, to)?;
    let giver = environment.primary.name.clone();
    match probe(observed, environment, Kind::Replica, &replica.name) {
        Ok(probe) if !probe.in_recovery => {}
        Ok(_) => return Err(RoleRefusal::NotPromoted { member: to.into(), seen: "it is in recovery".into() }),
        Err(seen) => return Err(RoleRefusal::NotPromoted { member: to.into(), seen }),
    }
    let old = old_primary(observed, environment);
    if matches!(old, OldPrimary::Writable(_)) {
        return Err(RoleRefusal::BothWritable { member: to.into(), primary: giver });
    }
    let change = RoleChange {
        at: String::new(),
        from: giver.clone(),
        to: to.into(),
        why: RoleChangeKind::Recorded,
        lost_bytes: None,
        lost_milliseconds: None,
        statement: None,
    };
    let mut steps = vec![step(address(environment, Kind::Cluster, PRIMARY), Action::RecordPrimary { change })];
    let pooled = environment
        .pooler
        .as_ref()
        .is_some_and(|pooler| matches!(observed.hosts.get(&pooler.host), Some(HostObservation::Reachable { .. })));
    let rejoin = matches!(old, OldPrimary::Down).then_some(true);
    steps.extend(after_promotion(environment, to, &giver, &giver_slot(environment, to), pooled, rejoin));
    Ok(Operation { id: operation_id.into(), description: format!("record {to} as the primary of {id}"), steps })
}
