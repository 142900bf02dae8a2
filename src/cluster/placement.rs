//! The partition-to-shard allocator: each new partition goes to the shard owning the fewest
//! partitions of all topics. Ties go to the first shard in order from a starting shard that
//! rotates per topic, so that topics of one partition, and the first partitions of larger
//! topics, spread over the shards instead of piling onto shard 0. A table, not a hash, so
//! partitions can be moved later.

/// Chooses a shard for each of `count` new partitions, given the partitions every shard owns
/// now (`loads`, updated in place), trying shards from `start_shard` on.
pub fn place_partitions(loads: &mut [u32], start_shard: u32, count: usize) -> Vec<u32> {
    assert!(!loads.is_empty(), "a broker has at least one shard");
    let shard_count = loads.len();
    let start = start_shard as usize % shard_count;
    (0..count)
        .map(|_| {
            let chosen = (0..shard_count)
                .map(|i| (start + i) % shard_count)
                .min_by_key(|shard| loads[*shard])
                .expect("at least one shard");
            loads[chosen] += 1;
            chosen as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(loads: &[u32]) -> u32 {
        loads.iter().max().unwrap() - loads.iter().min().unwrap()
    }

    #[test]
    fn topics_of_1_3_and_8_partitions_spread_evenly_over_4_shards() {
        let mut loads = vec![0; 4];
        for (topic_index, count) in [1usize, 3, 8].into_iter().enumerate() {
            let shards = place_partitions(&mut loads, topic_index as u32, count);
            assert_eq!(shards.len(), count);
            assert!(spread(&loads) <= 1, "after {count} partitions: {loads:?}");
        }
        assert_eq!(loads, [3, 3, 3, 3]);
    }

    #[test]
    fn ties_rotate_with_the_starting_shard() {
        let mut loads = vec![0; 4];
        assert_eq!(place_partitions(&mut loads, 2, 4), [2, 3, 0, 1]);
        assert_eq!(place_partitions(&mut loads, 0, 1), [0]);
        assert_eq!(place_partitions(&mut loads, 0, 1), [1], "fewest first");
        assert_eq!(place_partitions(&mut loads, 7, 1), [3], "start wraps");
    }

    #[test]
    fn new_partitions_fill_the_emptiest_shards_first() {
        let mut loads = vec![5, 0, 2, 5];
        let shards = place_partitions(&mut loads, 0, 6);
        assert_eq!(shards, [1, 1, 1, 2, 1, 2]);
        assert_eq!(loads, [5, 4, 4, 5]);
    }

    #[test]
    fn many_topics_stay_balanced() {
        let mut loads = vec![0; 7];
        for topic_index in 0..200u32 {
            place_partitions(&mut loads, topic_index, 1 + (topic_index as usize * 13) % 9);
            assert!(spread(&loads) <= 1, "{loads:?}");
        }
    }
}
