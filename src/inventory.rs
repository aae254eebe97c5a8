//! inventory: the resources a topology describes, each yielded once with
//! its address, what it is (with its placement for those that live in a
//! process of their own) and what it depends on. The graph, observe and
//! apply's ownership read this one list; a new kind of resource is a new
//! `Item` variant, and every exhaustive match over it names the places
//! that must learn about it. Pure: no I/O.

use crate::address::{Address, Kind};
use crate::placement::{self, ClusterPlacement, PRIMARY, PoolerPlacement};
use crate::spec::Connect;
use crate::topology::{Environment, Replica, Topology};

/// One resource of the topology.
#[derive(Debug, Clone)]
pub struct Resource<'a> {
    pub address: Address,
    pub environment: &'a Environment,
    pub item: Item<'a>,
    /// What must exist before this resource.
    pub depends_on: Vec<Address>,
}

/// What a resource is.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A PostgreSQL cluster member: the primary or a streaming replica.
    Member {
        name: &'a str,
        replica: Option<&'a Replica>,
        placement: ClusterPlacement,
    },
    /// A login role on the primary.
    Role {
        name: &'a str,
        replication: bool,
    },
    /// pgfleet's block of the primary's pg_hba.conf.
    Hba,
    /// The application database.
    Database {
        name: &'a str,
        owner: &'a str,
    },
    /// A replica's physical slot on the primary.
    Slot {
        name: &'a str,
        replica: &'a Replica,
    },
    Pooler(PoolerPlacement),
    /// The SSH tunnel a replica with `connect: ssh_tunnel` reaches its
    /// primary through, kept running on the replica's host.
    Tunnel {
        replica: &'a Replica,
    },
    /// The Odoo filestore mirrored to a replica's host.
    Filestore {
        replica: &'a str,
    },
    /// Odoo's configuration file, kept pointed at the database.
    Odoo(&'a crate::spec::Odoo),
    /// The environment's backup storage.
    Backup,
}

impl Item<'_> {
    /// The address kind of this item.
    pub fn kind(&self) -> Kind {
        match self {
            Item::Member { replica: None, .. } => Kind::Cluster,
            Item::Member { replica: Some(_), .. } => Kind::Replica,
            Item::Role { .. } => Kind::Role,
            Item::Hba => Kind::Hba,
            Item::Database { .. } => Kind::Database,
            Item::Slot { .. } => Kind::Slot,
            Item::Pooler(_) => Kind::Pooler,
            Item::Tunnel { .. } => Kind::Tunnel,
            Item::Filestore { .. } => Kind::Filestore,
            Item::Odoo(_) => Kind::Odoo,
            Item::Backup => Kind::Backup,
        }
    }
}

/// Every resource of the topology, environment by environment.
#[derive(Debug, Clone, Default)]
pub struct Inventory<'a> {
    pub resources: Vec<Resource<'a>>,
}

impl<'a> Inventory<'a> {
    pub fn of(topology: &'a Topology) -> Self {
        let mut inventory = Inventory::default();
        for environment in &topology.environments {
            inventory.add_environment(environment);
        }
        inventory
    }

    /// The resources of one environment.
    pub fn of_environment(environment: &'a Environment) -> Self {
        let mut inventory = Inventory::default();
        inventory.add_environment(environment);
        inventory
    }

    pub fn get(&self, address: &Address) -> Option<&Resource<'a>> {
        self.resources.iter().find(|resource| &resource.address == address)
    }

    /// The cluster members (primary first, then replicas).
    pub fn members(&self) -> impl Iterator<Item = (&Resource<'a>, &ClusterPlacement)> {
        self.resources.iter().filter_map(|resource| match &resource.item {
            Item::Member { placement, .. } => Some((resource, placement)),
            _ => None,
        })
    }

    pub fn poolers(&self) -> impl Iterator<Item = (&Resource<'a>, &PoolerPlacement)> {
        self.resources.iter().filter_map(|resource| match &resource.item {
            Item::Pooler(placement) => Some((resource, placement)),
            _ => None,
        })
    }

    fn push(&mut self, environment: &'a Environment, name: &str, item: Item<'a>, depends_on: Vec<Address>) {
        let address = Address::new(&environment.id, item.kind(), name);
        self.resources.push(Resource { address, environment, item, depends_on });
    }

    fn add_environment(&mut self, environment: &'a Environment) {
        let id = environment.id.as_str();
        let at = |kind, name: &str| Address::new(id, kind, name);
        let cluster = at(Kind::Cluster, PRIMARY);
        let owner = at(Kind::Role, &environment.database.owner);
        let database = at(Kind::Database, &environment.database.name);
        // The hba block admits pgfleet, the poolers and the replicas.
        let hba = at(Kind::Hba, "replication");
        let replicator = at(Kind::Role, &environment.replication.user);

        self.push(
            environment,
            PRIMARY,
            Item::Member { name: PRIMARY, replica: None, placement: placement::primary(environment) },
            Vec::new(),
        );
        self.push(environment, "replication", Item::Hba, vec![cluster.clone()]);
        self.push(
            environment,
            &environment.database.owner,
            Item::Role { name: &environment.database.owner, replication: false },
            vec![cluster.clone()],
        );
        self.push(
            environment,
            &environment.database.name,
            Item::Database { name: &environment.database.name, owner: &environment.database.owner },
            vec![owner.clone()],
        );
        if !environment.replicas.is_empty() {
            self.push(
                environment,
                &environment.replication.user,
                Item::Role { name: &environment.replication.user, replication: true },
                vec![cluster.clone()],
            );
        }
        for replica in &environment.replicas {
            let slot = at(Kind::Slot, &replica.name);
            self.push(environment, &replica.name, Item::Slot { name: &replica.slot, replica }, vec![cluster.clone()]);
            let mut needs = vec![slot, replicator.clone(), hba.clone(), database.clone()];
            if replica.connect == Connect::SshTunnel {
                self.push(environment, &replica.name, Item::Tunnel { replica }, vec![cluster.clone()]);
                needs.push(at(Kind::Tunnel, &replica.name));
            }
            self.push(
                environment,
                &replica.name,
                Item::Member {
                    name: &replica.name,
                    replica: Some(replica),
                    placement: placement::replica(environment, replica),
                },
                // The database must exist before the base backup copies it,
                // and the tunnel must carry it.
                needs,
            );
        }
        for pooler in placement::poolers(environment) {
            let depends_on = if pooler.fronts == PRIMARY {
                vec![database.clone(), hba.clone()]
            } else {
                vec![at(Kind::Replica, &pooler.fronts)]
            };
            let name = pooler.fronts.clone();
            self.push(environment, &name, Item::Pooler(pooler), depends_on);
        }
        if let Some(filestore) = &environment.filestore {
            for name in &filestore.mirror_to {
                self.push(environment, name, Item::Filestore { replica: name }, vec![at(Kind::Replica, name)]);
            }
        }
        if let Some(odoo) = &environment.odoo {
            // Odoo is pointed at endpoints that already serve.
            let serves = |member: &str| match environment.pooler {
                Some(_) => at(Kind::Pooler, member),
                None if member == PRIMARY => cluster.clone(),
                None => at(Kind::Replica, member),
            };
            let mut needs = vec![serves(PRIMARY), database.clone()];
            needs.extend(environment.replicas.first().map(|replica| serves(&replica.name)));
            self.push(environment, "config", Item::Odoo(odoo), needs);
        }
        if environment.backups.is_some() {
            self.push(environment, "storage", Item::Backup, vec![database.clone()]);
        }
    }
}
