//! Which CPUs the shards run on, read from the hwloc topology: one processing unit per core
//! (never two hyperthreads of one core for two shards), spread round-robin over packages so
//! that a small shard count still uses every socket.

use hwlocality::object::types::ObjectType;
use hwlocality::Topology;

/// The CPUs (OS indexes) for `shard_count` shards, spread over cores and packages, or `None`
/// when the topology cannot be read or has fewer cores than shards (then glommio places the
/// executors itself).
pub fn spread_cpus(shard_count: usize) -> Option<Vec<usize>> {
    let topology = Topology::new()
        .map_err(|error| tracing::warn!(%error, "cannot read the hwloc topology"))
        .ok()?;
    // (package, first processing unit) of every core.
    let mut cores: Vec<(usize, usize)> = topology
        .objects_with_type(ObjectType::Core)
        .filter_map(|core| {
            let pu = usize::from(core.cpuset()?.first_set()?);
            let package = core
                .first_ancestor_with_type(ObjectType::Package)
                .map_or(0, |p| p.logical_index());
            Some((package, pu))
        })
        .collect();
    if cores.len() < shard_count {
        return None;
    }
    cores.sort_unstable();
    let package_count = cores.iter().map(|(p, _)| *p).max().map_or(1, |p| p + 1);
    let mut by_package: Vec<std::collections::VecDeque<usize>> =
        vec![Default::default(); package_count];
    for (package, pu) in cores {
        by_package[package].push_back(pu);
    }
    let mut chosen = Vec::with_capacity(shard_count);
    while chosen.len() < shard_count {
        for package in by_package.iter_mut() {
            if chosen.len() < shard_count {
                if let Some(pu) = package.pop_front() {
                    chosen.push(pu);
                }
            }
        }
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spreads_one_shard_per_core_when_the_topology_is_readable() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(cpus) = super::spread_cpus(1) {
            assert_eq!(cpus.len(), 1);
        }
        assert!(
            super::spread_cpus(cores * 64).is_none(),
            "more shards than cores"
        );
    }
}
