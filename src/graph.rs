//! The resource dependency graph: which resource must exist before which.
//!
//! Built from the resource inventory alone, with edges only from a
//! resource to the ones that need it, so it is acyclic by construction. The order it yields
//! is a topological order with ties broken by address, so plans and DOT
//! output are the same on every run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::address::Address;
use crate::inventory::Inventory;
use crate::topology::Topology;

#[derive(Debug, Clone, Default)]
pub struct ResourceGraph {
    graph: DiGraph<Address, ()>,
    nodes: BTreeMap<Address, NodeIndex>,
}

impl ResourceGraph {
    pub fn build(topology: &Topology) -> Self {
        let mut graph = ResourceGraph::default();
        for resource in Inventory::of(topology).resources {
            graph.node(&resource.address);
            for dependency in &resource.depends_on {
                graph.edge(dependency, &resource.address);
            }
        }
        graph
    }

    fn node(&mut self, address: &Address) -> NodeIndex {
        if let Some(&index) = self.nodes.get(address) {
            return index;
        }
        let index = self.graph.add_node(address.clone());
        self.nodes.insert(address.clone(), index);
        index
    }

    /// `before` must exist before `after`.
    fn edge(&mut self, before: &Address, after: &Address) {
        let (before, after) = (self.node(before), self.node(after));
        self.graph.update_edge(before, after, ());
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn contains(&self, address: &Address) -> bool {
        self.nodes.contains_key(address)
    }

    /// Every (before, after) pair, sorted.
    pub fn edges(&self) -> Vec<(&Address, &Address)> {
        let mut edges: Vec<_> = self
            .graph
            .edge_indices()
            .filter_map(|edge| self.graph.edge_endpoints(edge))
            .map(|(before, after)| (&self.graph[before], &self.graph[after]))
            .collect();
        edges.sort();
        edges
    }

    /// Topological order (Kahn's algorithm), the smallest address first
    /// among those ready.
    pub fn order(&self) -> Vec<&Address> {
        let mut waiting: Vec<usize> = self
            .graph
            .node_indices()
            .map(|node| self.graph.neighbors_directed(node, Direction::Incoming).count())
            .collect();
        let mut ready: BinaryHeap<Reverse<(&Address, NodeIndex)>> = self
            .graph
            .node_indices()
            .filter(|node| waiting[node.index()] == 0)
            .map(|node| Reverse((&self.graph[node], node)))
            .collect();
        let mut order = Vec::with_capacity(self.graph.node_count());
        while let Some(Reverse((address, node))) = ready.pop() {
            order.push(address);
            for next in self.graph.neighbors_directed(node, Direction::Outgoing) {
                waiting[next.index()] -= 1;
                if waiting[next.index()] == 0 {
                    ready.push(Reverse((&self.graph[next], next)));
                }
            }
        }
        debug_assert_eq!(order.len(), self.graph.node_count(), "the resource graph is acyclic by construction");
        order
    }

    /// Everything `address` depends on, directly or not, itself included.
    pub fn dependencies(&self, address: &Address) -> Vec<&Address> {
        let Some(&start) = self.nodes.get(address) else {
            return Vec::new();
        };
        let mut seen = vec![false; self.graph.node_count()];
        let mut stack = vec![start];
        let mut found = Vec::new();
        while let Some(node) = stack.pop() {
            if std::mem::replace(&mut seen[node.index()], true) {
                continue;
            }
            found.push(&self.graph[node]);
            stack.extend(self.graph.neighbors_directed(node, Direction::Incoming));
        }
        found.sort();
        found
    }

    /// Graphviz DOT, one cluster box per environment.
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("digraph pgfleet {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
        let mut by_environment: BTreeMap<&str, Vec<&Address>> = BTreeMap::new();
        for address in self.order() {
            by_environment.entry(&address.environment).or_default().push(address);
        }
        for (environment, addresses) in &by_environment {
            let _ = writeln!(dot, "  subgraph \"cluster_{environment}\" {{\n    label=\"{environment}\";");
            for address in addresses {
                let _ = writeln!(dot, "    \"{address}\";");
            }
            dot.push_str("  }\n");
        }
        for (before, after) in self.edges() {
            let _ = writeln!(dot, "  \"{before}\" -> \"{after}\";");
        }
        dot.push_str("}\n");
        dot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;

    /// Twenty environments, each with three replicas, a pooler, a filestore
    /// mirror and backups: the order is complete, respects every edge, and
    /// is the same on every build.
    #[test]
    fn large_topology_orders_every_resource_after_its_dependencies() {
        let mut yaml = String::from("version: 1\nhosts:\n  here: { transport: local }\nenvironments:\n");
        for environment in 0..20 {
            let octet = environment + 1;
            yaml.push_str(&format!(
                "  - id: env{environment}\n    primary: {{ host: here, address: 127.1.{octet}.1, data_dir: /d/{environment}/p, tuning: none }}\n    pgbouncer: {{ pool_size: 10 }}\n    backups: {{ storage: {{ kind: local, path: /b }} }}\n    filestore: {{ path: /f, mirror_to: [r0, r2] }}\n    replicas:\n"
            ));
            for replica in 0..3 {
                yaml.push_str(&format!(
                    "      - {{ name: r{replica}, host: here, address: 127.1.{octet}.{}, data_dir: /d/{environment}/r{replica} }}\n",
                    replica + 2
                ));
            }
        }
        let topology = load::parse("generated.yaml", yaml).unwrap().resolve().unwrap();
        let graph = ResourceGraph::build(&topology);
        let order = graph.order();
        // Per environment: cluster, 2 roles, hba, database, 3 slots,
        // 3 replicas, 4 poolers, 2 filestores, 1 backup.
        assert_eq!(graph.len(), 20 * 18);
        assert_eq!(order.len(), graph.len());
        let position: BTreeMap<&Address, usize> =
            order.iter().enumerate().map(|(at, address)| (*address, at)).collect();
        for (before, after) in graph.edges() {
            assert!(position[before] < position[after], "{before} must come before {after}");
        }
        assert_eq!(order, ResourceGraph::build(&topology).order());
    }

    #[test]
    fn dependencies_include_everything_upstream() {
        let yaml = "version: 1\nhosts:\n  here: { transport: local }\nenvironments:\n  - id: prod\n    primary: { host: here, data_dir: /p, tuning: none }\n    pgbouncer: { pool_size: 10 }\n    replicas:\n      - { name: r1, host: here, address: 127.0.0.2, data_dir: /r1 }\n";
        let topology = load::parse("t.yaml", yaml.to_owned()).unwrap().resolve().unwrap();
        let graph = ResourceGraph::build(&topology);
        let pooler: Address = "prod.pooler.r1".parse().unwrap();
        let names: Vec<String> = graph.dependencies(&pooler).iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "prod.cluster.primary",
                "prod.role.odoo",
                "prod.role.replicator",
                "prod.hba.replication",
                "prod.database.prod",
                "prod.slot.r1",
                "prod.replica.r1",
                "prod.pooler.r1"
            ]
        );
    }
}
