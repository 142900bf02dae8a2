use super::*;
use crate::group::ops::JoinRequest;

fn at(ms: i64) -> Now {
    Now {
        monotonic_ms: ms,
        wall_ms: 1_000_000 + ms,
    }
}

fn config(initial_delay_ms: i64) -> GroupConfig {
    GroupConfig {
        group_initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupConfig::default()
    }
}

fn join_request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(String::from),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn answered<T>(waiter: &mut oneshot::Receiver<T>) -> Option<T> {
    waiter.try_recv().ok().flatten()
}

/// Joins a new dynamic member the v4+ way (MEMBER_ID_REQUIRED, then again with the id).
fn join_new(group: &mut Group, now: Now, config: &GroupConfig) -> (String, JoinStep) {
    let JoinStep::Reply(first) = group.join(join_request("", None, &["range"]), now, config) else {
        panic!("a new member first gets its id");
    };
    assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
    let step = group.join(
        join_request(&first.member_id, None, &["range"]),
        now,
        config,
    );
    (first.member_id, step)
}

fn waiting(step: JoinStep) -> oneshot::Receiver<JoinResponse> {
    match step {
        JoinStep::Wait(waiter) => waiter,
        JoinStep::Reply(reply) => panic!("expected to wait, got {reply:?}"),
    }
}

fn sync(
    group: &mut Group,
    member: &str,
    generation: i32,
    assignments: &[(&str, &str)],
) -> SyncStep {
    group.sync(
        SyncRequest {
            group_id: "g".into(),
            member_id: member.into(),
            generation_id: generation,
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        },
        at(0),
    )
}

/// A stable group of `count` members joined at time 0; their ids, leader first.
fn stable_group(count: usize, config: &GroupConfig) -> (Group, Vec<String>) {
    let mut group = Group::new("g".into(), 0, at(0));
    let mut ids = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..count {
        let (id, step) = join_new(&mut group, at(0), config);
        ids.push(id);
        waiters.push(waiting(step));
    }
    group.poll(at(config.group_initial_rebalance_delay_ms), config);
    let responses: Vec<JoinResponse> = waiters.iter_mut().map(|w| answered(w).unwrap()).collect();
    let leader = responses[0].leader.clone();
    let generation = responses[0].generation_id;
    let assignments: Vec<(String, String)> =
        ids.iter().map(|m| (m.clone(), format!("to-{m}"))).collect();
    let borrowed: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    let SyncStep::Persist {
        generation: g,
        mut waiter,
    } = sync(&mut group, &leader, generation, &borrowed)
    else {
        panic!("the leader's sync stores the group");
    };
    group.complete_sync(g, true, at(1), config);
    assert_eq!(answered(&mut waiter).unwrap().error_code, codes::NONE);
    assert_eq!(group.state(), GroupState::Stable);
    ids.sort_by_key(|id| id != &leader);
    (group, ids)
}

#[test]
fn a_single_member_group_becomes_stable() {
    let config = config(0);
    let mut group = Group::new("g".into(), 0, at(0));
    let (member, step) = join_new(&mut group, at(0), &config);
    let mut waiter = waiting(step);
    let joined = answered(&mut waiter).expect("the only member completes the barrier");
    assert_eq!(joined.error_code, codes::NONE);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, member);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let SyncStep::Persist {
        generation,
        mut waiter,
    } = sync(&mut group, &member, 1, &[(member.as_str(), "mine")])
    else {
        panic!("leader sync persists");
    };
    assert!(answered(&mut waiter).is_none(), "answered only once stored");
    group.complete_sync(generation, true, at(1), &config);
    let synced = answered(&mut waiter).unwrap();
    assert_eq!(synced.assignment, Bytes::from_static(b"mine"));
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(group.heartbeat(&member, None, 1, at(2)), codes::NONE);
    assert_eq!(
        group.heartbeat(&member, None, 0, at(2)),
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        group.heartbeat("nobody", None, 1, at(2)),
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn initial_delay_waits_for_more_members() {
    let config = config(3_000);
    let mut group = Group::new("g".into(), 0, at(0));
    let (_, first) = join_new(&mut group, at(0), &config);
    let mut first = waiting(first);
    group.poll(at(1_000), &config);
    assert!(answered(&mut first).is_none());
    let (_, second) = join_new(&mut group, at(2_000), &config);
    let mut second = waiting(second);
    // The second join moved the deadline to 5 s.
    group.poll(at(3_500), &config);
    assert!(answered(&mut first).is_none());
    group.poll(at(5_000), &config);
    let a = answered(&mut first).unwrap();
    let b = answered(&mut second).unwrap();
    assert_eq!(a.generation_id, b.generation_id);
    assert_eq!(
        a.members.len() + b.members.len(),
        2,
        "only the leader gets the member list"
    );
}

#[test]
fn a_new_member_rebalances_a_stable_group_and_heartbeats_say_so() {
    let config = config(100);
    let (mut group, ids) = stable_group(2, &config);
    let generation = group.generation();
    let (newcomer, step) = join_new(&mut group, at(10), &config);
    let mut newcomer_waiter = waiting(step);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&ids[0], None, generation, at(20)),
        codes::REBALANCE_IN_PROGRESS
    );
    let mut rejoins: Vec<_> = ids
        .iter()
        .map(|id| waiting(group.join(join_request(id, None, &["range"]), at(30), &config)))
        .collect();
    let joined = answered(&mut newcomer_waiter).expect("all three joined");
    assert_eq!(joined.generation_id, generation + 1);
    for waiter in &mut rejoins {
        assert_eq!(answered(waiter).unwrap().generation_id, generation + 1);
    }
    assert_eq!(group.member_count(), 3);
    assert!(group
        .describe()
        .members
        .iter()
        .any(|m| m.member_id == newcomer));
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance() {
    let config = config(100);
    let (mut group, ids) = stable_group(2, &config);
    let generation = group.generation();
    // Only the first keeps heartbeating.
    for t in (1_000..=9_000).step_by(1_000) {
        assert_eq!(
            group.heartbeat(&ids[0], None, generation, at(t)),
            codes::NONE
        );
        group.poll(at(t), &config);
    }
    group.poll(at(10_101), &config);
    assert_eq!(
        group.member_count(),
        1,
        "the silent member is out after its session timeout"
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    let mut waiter =
        waiting(group.join(join_request(&ids[0], None, &["range"]), at(10_100), &config));
    let joined = answered(&mut waiter).unwrap();
    assert_eq!(joined.generation_id, generation + 1);
    assert_eq!(joined.leader, ids[0]);
}

#[test]
fn leaving_last_member_empties_the_group_and_asks_to_store_it() {
    let config = config(0);
    let (mut group, ids) = stable_group(1, &config);
    group.take_persist();
    let leaving = [LeavingMember {
        member_id: ids[0].clone(),
        group_instance_id: None,
    }];
    assert_eq!(group.leave(&leaving, at(5), &config), vec![codes::NONE]);
    assert_eq!(group.state(), GroupState::Empty);
    assert!(group.take_persist());
    assert_eq!(
        group.leave(&leaving, at(6), &config),
        vec![codes::UNKNOWN_MEMBER_ID]
    );
}

#[test]
fn static_member_rejoining_keeps_its_assignment_and_fences_the_old_id() {
    let config = config(0);
    let mut group = Group::new("g".into(), 0, at(0));
    let mut waiter =
        waiting(group.join(join_request("", Some("host-1"), &["range"]), at(0), &config));
    let joined = answered(&mut waiter).unwrap();
    let old_id = joined.member_id.clone();
    let SyncStep::Persist { generation, .. } =
        sync(&mut group, &old_id, 1, &[(old_id.as_str(), "p0")])
    else {
        panic!("leader sync persists");
    };
    group.complete_sync(generation, true, at(1), &config);
    // The process restarts: same instance id, no member id.
    let JoinStep::Reply(rejoined) =
        group.join(join_request("", Some("host-1"), &["range"]), at(2), &config)
    else {
        panic!("a stable static member is answered at once");
    };
    assert_eq!(rejoined.error_code, codes::NONE);
    assert_ne!(rejoined.member_id, old_id);
    assert_eq!(rejoined.generation_id, 1, "no rebalance");
    assert_eq!(
        rejoined.leader, old_id,
        "the leader's old id, as Kafka answers, so that it does not assign again"
    );
    assert!(rejoined.members.is_empty());
    assert_eq!(group.state(), GroupState::Stable);
    assert_eq!(
        group.heartbeat(&old_id, Some("host-1"), 1, at(3)),
        codes::FENCED_INSTANCE_ID
    );
    let SyncStep::Reply(synced) = sync(&mut group, &rejoined.member_id, 1, &[]) else {
        panic!("stable sync answers at once");
    };
    assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
}

#[test]
fn commits_are_checked_against_membership() {
    let config = config(0);
    let (mut group, ids) = stable_group(1, &config);
    let generation = group.generation();
    assert_eq!(group.check_commit(&ids[0], None, generation, at(1)), Ok(()));
    assert_eq!(
        group.check_commit(&ids[0], None, generation + 5, at(1)),
        Err(codes::ILLEGAL_GENERATION)
    );
    assert_eq!(
        group.check_commit("", None, -1, at(1)),
        Err(codes::UNKNOWN_MEMBER_ID),
        "a standalone commit into an active group is refused"
    );
    let mut empty = Group::new("solo".into(), 0, at(0));
    assert_eq!(empty.check_commit("", None, -1, at(1)), Ok(()));
}

#[test]
fn mismatched_protocols_are_refused() {
    let config = config(0);
    let (mut group, _) = stable_group(1, &config);
    let JoinStep::Reply(refused) = group.join(join_request("", None, &["sticky"]), at(1), &config)
    else {
        panic!("refused at once");
    };
    assert_eq!(refused.error_code, codes::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn a_leader_that_never_syncs_is_removed_at_the_sync_deadline() {
    let config = config(100);
    let mut group = Group::new("g".into(), 0, at(0));
    let (_, a) = join_new(&mut group, at(0), &config);
    let (_, b) = join_new(&mut group, at(0), &config);
    let (mut a, mut b) = (waiting(a), waiting(b));
    group.poll(at(100), &config);
    let joined = [answered(&mut a).unwrap(), answered(&mut b).unwrap()];
    let leader = joined[0].leader.clone();
    let generation = joined[0].generation_id;
    let follower = joined
        .iter()
        .map(|j| j.member_id.clone())
        .find(|m| *m != leader)
        .unwrap();
    let SyncStep::Wait(mut follower_sync) = sync(&mut group, &follower, generation, &[]) else {
        panic!("a follower waits for the leader");
    };
    // Both keep their sessions alive; only the leader's assignment never comes.
    for t in (5_000..30_000).step_by(5_000) {
        assert_eq!(
            group.heartbeat(&leader, None, generation, at(t)),
            codes::NONE
        );
        group.poll(at(t), &config);
    }
    assert!(answered(&mut follower_sync).is_none());
    group.poll(at(30_100), &config);
    assert_eq!(
        answered(&mut follower_sync).unwrap().error_code,
        codes::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        group.member_count(),
        1,
        "the leader that never synced is out"
    );
}

fn committed_at(offset: i64, commit_timestamp_ms: i64) -> Committed {
    Committed {
        value: OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms,
        },
        record_offset: offset,
    }
}

#[test]
fn offsets_expire_as_in_kafka() {
    let config = config(0);
    let retention_ms = 60_000;
    let exists = |topic: &str| topic != "deleted";

    // A standalone consumer's offsets: by their own commit time.
    let mut solo = Group::new("solo".into(), 0, at(0));
    solo.offsets
        .insert(TopicPartition::new("t", 0), committed_at(5, 1_000));
    solo.offsets
        .insert(TopicPartition::new("t", 1), committed_at(6, 50_000));
    solo.offsets
        .insert(TopicPartition::new("deleted", 0), committed_at(7, 50_000));
    assert_eq!(
        solo.expired_offsets(61_000, retention_ms, &exists),
        vec![
            TopicPartition::new("deleted", 0),
            TopicPartition::new("t", 0)
        ]
    );

    // A consumer group: nothing expires while it has members, however old the commits...
    let (mut group, ids) = stable_group(1, &config);
    group
        .offsets
        .insert(TopicPartition::new("t", 0), committed_at(5, 0));
    let far_future = 10 * retention_ms + 1_000_000;
    assert!(group
        .expired_offsets(far_future, retention_ms, &exists)
        .is_empty());
    // ...and everything once it has been empty for the retention time.
    let leaving = [LeavingMember {
        member_id: ids[0].clone(),
        group_instance_id: None,
    }];
    group.leave(&leaving, at(100), &config);
    assert_eq!(group.state(), GroupState::Empty);
    let emptied_at = group.state_since_wall_ms();
    assert!(group
        .expired_offsets(emptied_at + retention_ms - 1, retention_ms, &exists)
        .is_empty());
    assert_eq!(
        group.expired_offsets(emptied_at + retention_ms, retention_ms, &exists),
        vec![TopicPartition::new("t", 0)]
    );
}
