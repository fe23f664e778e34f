//! Task-store behaviour, written once and run on SQLite, PostgreSQL and MariaDB.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dts_core::spec::{parse_submit_body, Secret};
use dts_core::{DesiredState, TaskSpec, TaskState};
use dts_e2e::{fresh_store, per_backend, TestStore, SEED_BODY, SEED_PASSWORD_IN_BODY};
use dts_store::tasks::{AlterOutcome, Assignment, Progress};
use dts_store::users::StoredUser;
use dts_store::{SecretCipher, Store};
use sqlx::Row;

per_backend!(fresh_store =>
    create_get_and_list,
    list_pages_newest_first,
    list_summaries_carry_every_field_as_stored,
    alter_uses_optimistic_concurrency,
    alter_without_password_keeps_it,
    desired_state_moves_state,
    progress_is_fenced_by_epoch,
    delete_removes,
    passwords_are_sealed_at_rest,
    reopening_migrates_idempotently_and_checks_the_key,
    users_are_inserted_once_changed_and_deleted,
    ingest_streams_have_unique_names_and_sealed_secrets,
    concurrent_creates_get_distinct_ids,
    a_cluster_nonce_is_claimed_once_until_forgotten,
    ingest_counters_sum_over_nodes,
);

fn seed_spec() -> TaskSpec {
    parse_submit_body(SEED_BODY.as_bytes()).unwrap()
}

fn local() -> Assignment {
    Assignment { worker_id: "node-a".into(), service_addr: "10.1.1.1:8080".into() }
}

async fn create_get_and_list(t: TestStore) {
    let spec = seed_spec();
    let created = t.store.create_task(&spec, Some(&local())).await.unwrap();
    assert!(created.id > 0);
    assert_eq!(created.state, TaskState::Pending);
    assert_eq!(created.desired_state, DesiredState::Running);
    assert_eq!((created.version, created.epoch), (1, 1));
    assert_eq!(created.worker_id.as_deref(), Some("node-a"));
    assert_eq!(created.service_addr, "10.1.1.1:8080");
    assert_eq!(created.source_addr, "127.0.0.1:5306");
    assert_eq!(created.dest_addr, "127.0.0.1:9092");
    assert_eq!(created.pos, "");
    assert_eq!(created.transaction_time, None);
    assert!(created.created_at > 0 && created.updated_at >= created.created_at);
    // The spec comes back without its password; the store hands it out only on request.
    assert_eq!(created.spec.source.password, None);
    assert_eq!(created.spec.kafka, spec.kafka);
    assert_eq!(created.spec.filters, spec.filters);
    assert_eq!(t.store.source_password(&created).unwrap().expose(), SEED_PASSWORD_IN_BODY);

    let unassigned = t.store.create_task(&spec, None).await.unwrap();
    assert_eq!((unassigned.epoch, unassigned.worker_id.as_deref(), unassigned.service_addr.as_str()), (0, None, ""));

    assert!(t.store.get_task(created.id + 1000).await.unwrap().is_none());
    let page = t.store.list_tasks(10, 0).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.tasks.iter().map(|s| s.id).collect::<Vec<_>>(), vec![unassigned.id, created.id]);
    assert_eq!(page.tasks[1].state, "Pending");
    assert_eq!(page.tasks[1].service_addr, "10.1.1.1:8080");
}

async fn list_pages_newest_first(t: TestStore) {
    let spec = seed_spec();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(t.store.create_task(&spec, None).await.unwrap().id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    for page in 0..3 {
        let p = t.store.list_tasks(3, page * 3).await.unwrap();
        assert_eq!(p.total, 7);
        seen.extend(p.tasks.iter().map(|s| s.id));
    }
    assert_eq!(seen, ids);
    // A page past the end has no row to carry the total; it is still told.
    let past = t.store.list_tasks(3, 30).await.unwrap();
    assert!(past.tasks.is_empty());
    assert_eq!(past.total, 7);
}

/// The list's summaries hold each field as written, whatever the text:
/// quotes, backslashes, control characters and characters beyond the BMP
/// (SQLite's page travels as JSON); a NUL in a message (PostgreSQL cannot
/// store one) is stored as U+FFFD on every backend.
async fn list_summaries_carry_every_field_as_stored(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), Some(&local())).await.unwrap();
    let failed = Progress {
        state: TaskState::Failed,
        message: "table \"a\\b\"\n\tgone \u{1F600} \u{0}".into(),
        pos: "mysql-bin.000001/4".into(),
        checkpoint: None,
        transaction_time: Some(i64::MAX),
    };
    assert!(t.store.record_progress(task.id, task.epoch, &failed).await.unwrap());
    let stored = t.store.get_task(task.id).await.unwrap().unwrap();
    let page = t.store.list_tasks(5, 0).await.unwrap();
    assert_eq!(page.total, 1);
    let summary = &page.tasks[0];
    // NUL is the one character PostgreSQL cannot hold: every backend shows it as U+FFFD.
    assert_eq!(summary.message, failed.message.replace('\0', "\u{FFFD}"));
    assert_eq!(stored.message, summary.message);
    assert_eq!(
        (summary.id, summary.pos.as_str(), summary.transaction_time, summary.state.as_str()),
        (task.id, "mysql-bin.000001/4", Some(i64::MAX), "Failed")
    );
    assert_eq!(
        (summary.source_addr.as_str(), summary.dest_addr.as_str(), summary.service_addr.as_str()),
        ("127.0.0.1:5306", "127.0.0.1:9092", "10.1.1.1:8080")
    );
    assert_eq!(summary.updated_at, stored.updated_at);
}

async fn alter_uses_optimistic_concurrency(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), None).await.unwrap();
    let mut changed = seed_spec();
    changed.kafka.topic = Some("other_topic".into());
    changed.kafka.addr = "k1:9092,k2:9092".into();
    let AlterOutcome::Altered(after) = t.store.alter_task(task.id, task.version, &changed).await.unwrap() else {
        panic!("alter at the current version must succeed")
    };
    assert_eq!(after.version, task.version + 1);
    assert_eq!(after.spec.kafka.topic.as_deref(), Some("other_topic"));
    assert_eq!(after.dest_addr, "k1:9092,k2:9092");
    // A writer still holding the old version loses, and changes nothing.
    let mut stale = seed_spec();
    stale.kafka.topic = Some("stale".into());
    match t.store.alter_task(task.id, task.version, &stale).await.unwrap() {
        AlterOutcome::VersionConflict { current } => assert_eq!(current, after.version),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let now = t.store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(now.spec.kafka.topic.as_deref(), Some("other_topic"));
    assert!(matches!(t.store.alter_task(task.id + 99, 1, &changed).await.unwrap(), AlterOutcome::NotFound));
}

async fn alter_without_password_keeps_it(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), None).await.unwrap();
    let mut no_password = seed_spec();
    no_password.source.password = None;
    t.store.alter_task(task.id, 1, &no_password).await.unwrap();
    let after = t.store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(t.store.source_password(&after).unwrap().expose(), SEED_PASSWORD_IN_BODY);
    let mut rotated = seed_spec();
    rotated.source.password = Some(Secret::new("rotated"));
    t.store.alter_task(task.id, 2, &rotated).await.unwrap();
    let after = t.store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(t.store.source_password(&after).unwrap().expose(), "rotated");
}

async fn desired_state_moves_state(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), Some(&local())).await.unwrap();
    // A task no worker has started yet stops at once.
    let stopped = t.store.set_desired_state(task.id, DesiredState::Stopped).await.unwrap().unwrap();
    assert_eq!((stopped.state, stopped.desired_state), (TaskState::Stopped, DesiredState::Stopped));
    assert_eq!(stopped.version, 2);
    // Stopping again changes nothing, not even the version.
    let again = t.store.set_desired_state(task.id, DesiredState::Stopped).await.unwrap().unwrap();
    assert_eq!(again.version, 2);
    let started = t.store.set_desired_state(task.id, DesiredState::Running).await.unwrap().unwrap();
    assert_eq!((started.state, started.desired_state, started.version), (TaskState::Pending, DesiredState::Running, 3));
    // A running task must be flushed by its worker: it goes to Stopping.
    let running = Progress {
        state: TaskState::Running,
        message: String::new(),
        pos: "0-1-5".into(),
        checkpoint: None,
        transaction_time: Some(1_700_000_000_000),
    };
    assert!(t.store.record_progress(task.id, started.epoch, &running).await.unwrap());
    let stopping = t.store.set_desired_state(task.id, DesiredState::Stopped).await.unwrap().unwrap();
    assert_eq!(stopping.state, TaskState::Stopping);
    // Starting a failed task clears its error and queues it again.
    let failed = Progress { state: TaskState::Failed, message: "binlog purged".into(), ..running };
    assert!(t.store.record_progress(task.id, started.epoch, &failed).await.unwrap());
    let restarted = t.store.set_desired_state(task.id, DesiredState::Running).await.unwrap().unwrap();
    assert_eq!((restarted.state, restarted.message.as_str()), (TaskState::Pending, ""));
    assert!(t.store.set_desired_state(task.id + 99, DesiredState::Running).await.unwrap().is_none());
}

async fn progress_is_fenced_by_epoch(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), Some(&local())).await.unwrap();
    let progress = Progress {
        state: TaskState::Running,
        message: String::new(),
        pos: "MariaDB/0-1-42".into(),
        checkpoint: Some(r#"{"gtid":"0-1-42"}"#.into()),
        transaction_time: Some(1_700_000_000_123),
    };
    assert!(t.store.record_progress(task.id, task.epoch, &progress).await.unwrap());
    let after = t.store.get_task(task.id).await.unwrap().unwrap();
    assert_eq!(after.pos, "MariaDB/0-1-42");
    assert_eq!(after.checkpoint.as_deref(), Some(r#"{"gtid":"0-1-42"}"#));
    assert_eq!(after.transaction_time, Some(1_700_000_000_123));
    assert_eq!(after.state, TaskState::Running);
    let summary = t.store.list_tasks(1, 0).await.unwrap().tasks.remove(0);
    assert_eq!((summary.pos.as_str(), summary.transaction_time), ("MariaDB/0-1-42", Some(1_700_000_000_123)));
    // A stale holder cannot overwrite the position.
    let stale = Progress { pos: "MariaDB/0-1-1".into(), ..progress };
    assert!(!t.store.record_progress(task.id, task.epoch + 1, &stale).await.unwrap());
    assert_eq!(t.store.get_task(task.id).await.unwrap().unwrap().pos, "MariaDB/0-1-42");
}

async fn delete_removes(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), None).await.unwrap();
    assert!(t.store.delete_task(task.id).await.unwrap());
    assert!(!t.store.delete_task(task.id).await.unwrap());
    assert!(t.store.get_task(task.id).await.unwrap().is_none());
    assert_eq!(t.store.list_tasks(10, 0).await.unwrap().total, 0);
    let progress = Progress {
        state: TaskState::Running,
        message: String::new(),
        pos: String::new(),
        checkpoint: None,
        transaction_time: None,
    };
    assert!(
        !t.store.record_progress(task.id, task.epoch, &progress).await.unwrap(),
        "a deleted task fences its worker"
    );
}

async fn passwords_are_sealed_at_rest(t: TestStore) {
    let task = t.store.create_task(&seed_spec(), None).await.unwrap();
    let pool = sqlx::AnyPool::connect(&any_url(&t.url)).await.unwrap();
    let row = sqlx::query(&format!("SELECT spec, source_password FROM dts_tasks WHERE id = {}", task.id))
        .fetch_one(&pool)
        .await
        .unwrap();
    let spec = raw_text(&row, 0);
    let sealed = raw_text(&row, 1);
    assert!(!spec.contains(SEED_PASSWORD_IN_BODY), "{spec}");
    assert!(sealed.starts_with("v1:") && !sealed.contains(SEED_PASSWORD_IN_BODY), "{sealed}");
    pool.close().await;
}

async fn reopening_migrates_idempotently_and_checks_the_key(t: TestStore) {
    t.store.create_task(&seed_spec(), None).await.unwrap();
    let same = Store::open(&t.url, SecretCipher::from_base64(&t.key).unwrap()).await.unwrap();
    assert_eq!(same.list_tasks(10, 0).await.unwrap().total, 1);
    same.close().await;
    let other_key = SecretCipher::from_base64(&SecretCipher::generate_key_base64()).unwrap();
    let err = Store::open(&t.url, other_key).await.unwrap_err();
    assert!(err.to_string().contains("another secret key"), "{err}");
}

async fn users_are_inserted_once_changed_and_deleted(t: TestStore) {
    assert!(t.store.stored_users().await.unwrap().is_empty());
    let user = |hash: &str, role: &str, generated: bool| StoredUser {
        name: "admin".into(),
        password_hash: hash.into(),
        role: role.into(),
        generated,
        created_at: 0,
    };
    assert!(t.store.insert_user_if_absent(&user("$argon2id$first", "admin", true)).await.unwrap());
    assert!(!t.store.insert_user_if_absent(&user("$argon2id$second", "viewer", false)).await.unwrap());
    let stored = t.store.stored_users().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].password_hash.as_str(), stored[0].role.as_str()), ("$argon2id$first", "admin"));
    assert!(stored[0].generated && stored[0].created_at > 0);

    // Each part changes alone; the same value again still counts as found.
    assert!(t.store.update_user("admin", Some("$argon2id$third"), None).await.unwrap());
    assert!(t.store.update_user("admin", None, Some("operator")).await.unwrap());
    assert!(t.store.update_user("admin", None, Some("operator")).await.unwrap());
    assert!(!t.store.update_user("nobody", Some("$argon2id$x"), None).await.unwrap());
    let stored = t.store.stored_users().await.unwrap();
    assert_eq!((stored[0].password_hash.as_str(), stored[0].role.as_str()), ("$argon2id$third", "operator"));

    assert!(t.store.delete_user("admin").await.unwrap());
    assert!(!t.store.delete_user("admin").await.unwrap());
    assert!(t.store.stored_users().await.unwrap().is_empty());
}

async fn concurrent_creates_get_distinct_ids(t: TestStore) {
    let spec = seed_spec();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (store, spec) = (t.store.clone(), spec.clone());
            tokio::spawn(async move { store.create_task(&spec, None).await.unwrap().id })
        })
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 16);
    assert_eq!(t.store.list_tasks(100, 0).await.unwrap().total, 16);
}

async fn a_cluster_nonce_is_claimed_once_until_forgotten(t: TestStore) {
    let (nonce, other) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210");
    assert!(t.store.claim_nonce(nonce, 1_000).await.unwrap());
    assert!(!t.store.claim_nonce(nonce, 5_000).await.unwrap(), "a second claim is a replay");
    assert!(t.store.claim_nonce(other, 3_000).await.unwrap());
    // Only expired nonces go; a forgotten one could be claimed again, but by
    // then its request's timestamp is refused as stale.
    assert_eq!(t.store.forget_nonces(2_000).await.unwrap(), 1);
    assert!(!t.store.claim_nonce(other, 9_000).await.unwrap());
    assert!(t.store.claim_nonce(nonce, 9_000).await.unwrap());
}

async fn ingest_counters_sum_over_nodes(t: TestStore) {
    use dts_core::ingest::StreamCount;
    let count = |stream_id, records, errors| StreamCount { stream_id, records, bytes: records * 10, errors };
    t.store.record_ingest_counters("a#1", &[count(1, 5, 0), count(2, 1, 1)]).await.unwrap();
    t.store.record_ingest_counters("b#1", &[count(1, 7, 2)]).await.unwrap();
    // Totals since the process started: a second report replaces the first.
    t.store.record_ingest_counters("a#1", &[count(1, 6, 0)]).await.unwrap();
    let all = t.store.ingest_counters("").await.unwrap();
    assert_eq!(all[&1], StreamCount { stream_id: 1, records: 13, bytes: 130, errors: 2 });
    assert_eq!(all[&2], count(2, 1, 1));
    // The asking node leaves itself out (it adds its live counters).
    let others = t.store.ingest_counters("a#1").await.unwrap();
    assert_eq!(others[&1], count(1, 7, 2));
    assert!(!others.contains_key(&2));
    // A deleted stream's counters go with it.
    t.store.delete_stream(1).await.unwrap();
    assert!(!t.store.ingest_counters("").await.unwrap().contains_key(&1));
}

/// The store URL as sqlx's own driver wants it.
fn any_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        format!("{url}?mode=ro")
    } else {
        url.to_owned()
    }
}

/// A text column read raw: MySQL's driver under `Any` reports TEXT as BLOB.
fn raw_text(row: &sqlx::any::AnyRow, index: usize) -> String {
    row.try_get::<String, _>(index)
        .or_else(|_| row.try_get::<Vec<u8>, _>(index).map(|b| String::from_utf8(b).unwrap()))
        .unwrap()
}

mod cluster {
    use super::*;

    per_backend!(fresh_store =>
        heartbeats_register_and_refresh_workers,
        one_holder_per_lease,
        assignment_bumps_the_epoch_and_fences_the_old_holder,
    );

    async fn heartbeats_register_and_refresh_workers(t: TestStore) {
        t.store.worker_heartbeat("w1", "10.0.0.1:8080", 8, "0.1.0").await.unwrap();
        let first = t.store.workers().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].addr.as_str(), first[0].capacity, first[0].state.as_str()),
            ("10.0.0.1:8080", 8, "active")
        );
        assert!(t.store.set_worker_state("w1", "draining").await.unwrap());
        t.store.worker_heartbeat("w1", "10.0.0.9:8080", 16, "0.1.1").await.unwrap();
        let again = t.store.workers().await.unwrap();
        assert_eq!((again[0].addr.as_str(), again[0].capacity), ("10.0.0.9:8080", 16));
        assert_eq!(again[0].state, "draining", "a heartbeat does not undo a drain");
        assert!(again[0].heartbeat_at >= first[0].heartbeat_at);
        assert!(!t.store.set_worker_state("nobody", "draining").await.unwrap());
        assert!(t.store.remove_worker("w1").await.unwrap());
        assert!(t.store.workers().await.unwrap().is_empty());
    }

    async fn one_holder_per_lease(t: TestStore) {
        assert!(t.store.acquire_lease("scheduler", "cp-a", 60_000).await.unwrap());
        assert!(!t.store.acquire_lease("scheduler", "cp-b", 60_000).await.unwrap(), "held by cp-a");
        assert!(t.store.acquire_lease("scheduler", "cp-a", 60_000).await.unwrap(), "renewed by its holder");
        // An expired lease goes to whoever asks first.
        assert!(t.store.acquire_lease("other", "cp-a", -1).await.unwrap());
        assert!(t.store.acquire_lease("other", "cp-b", 60_000).await.unwrap());
        assert!(!t.store.acquire_lease("other", "cp-a", 60_000).await.unwrap());
        // Concurrent contenders: exactly one wins.
        let wins = futures_like_join(&t.store).await;
        assert_eq!(wins, 1);
    }

    async fn futures_like_join(store: &Store) -> usize {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.acquire_lease("race", &format!("cp-{i}"), 60_000).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for h in handles {
            wins += usize::from(h.await.unwrap());
        }
        wins
    }

    async fn assignment_bumps_the_epoch_and_fences_the_old_holder(t: TestStore) {
        let task = t.store.create_task(&seed_spec(), None).await.unwrap();
        assert!(t.store.assign(task.id, task.epoch, Some(("w1", "10.0.0.1:8080")), 10_000).await.unwrap());
        let on_w1 = t.store.get_task(task.id).await.unwrap().unwrap();
        assert_eq!(
            (on_w1.worker_id.as_deref(), on_w1.epoch, on_w1.service_addr.as_str()),
            (Some("w1"), 1, "10.0.0.1:8080")
        );
        assert!(on_w1.lease_expires_at.unwrap() > dts_store::now_ms());
        assert!(!t.store.assign(task.id, task.epoch, Some(("w2", "x")), 10_000).await.unwrap(), "stale epoch");
        let running = Progress {
            state: TaskState::Running,
            message: String::new(),
            pos: "p".into(),
            checkpoint: None,
            transaction_time: None,
        };
        assert!(t.store.record_progress(task.id, 1, &running).await.unwrap());
        // Never while w1's lease runs: two runners would hold the task.
        assert!(!t.store.assign(task.id, 1, Some(("w2", "10.0.0.2:8080")), 10_000).await.unwrap(), "lease running");
        assert_eq!(t.store.renew_task_leases("w1", 0).await.unwrap(), 1, "w1's lease ends now");
        // Moved to w2: w1's writes are refused from now on.
        assert!(t.store.assign(task.id, 1, Some(("w2", "10.0.0.2:8080")), 10_000).await.unwrap());
        let on_w2 = t.store.get_task(task.id).await.unwrap().unwrap();
        assert_eq!((on_w2.epoch, on_w2.state), (2, TaskState::Pending));
        assert!(!t.store.record_progress(task.id, 1, &running).await.unwrap());
        assert_eq!(t.store.tasks_for_worker("w2").await.unwrap().len(), 1);
        assert!(t.store.tasks_for_worker("w1").await.unwrap().is_empty());
        let placements = t.store.placements().await.unwrap();
        assert_eq!(placements[0].worker_id.as_deref(), Some("w2"));
        assert!(placements[0].desired_running);
        assert_eq!(t.store.renew_task_leases("w2", 5_000).await.unwrap(), 1);
        assert!(!t.store.assign(task.id, 2, None, 0).await.unwrap(), "lease running");
        assert_eq!(t.store.renew_task_leases("w2", 0).await.unwrap(), 1);
        assert!(t.store.assign(task.id, 2, None, 0).await.unwrap());
        assert_eq!(t.store.get_task(task.id).await.unwrap().unwrap().worker_id, None);
    }
}

async fn ingest_streams_have_unique_names_and_sealed_secrets(t: TestStore) {
    use dts_core::ingest::parse_stream_body;
    use dts_store::ingest::StreamUpdate;
    let parse = |group: &str, topic: &str| {
        let body = serde_json::json!({"stream": {"protocol": "inlong", "group_id": group, "stream_id": "s",
            "kafka": {"addr": "k:9092", "topic": topic, "security": {"protocol": "SASL_PLAINTEXT",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password": "sasl-secret-pw"}}}}});
        let spec = parse_stream_body(body.to_string().as_bytes()).unwrap();
        let key = spec.validate().unwrap();
        (spec, key)
    };
    let (spec, key) = parse("g1", "t1");
    let first = t.store.create_stream(&spec, &key).await.unwrap().expect("created");
    assert!(t.store.create_stream(&spec, &key).await.unwrap().is_none(), "one name, one stream");
    let (other, other_key) = parse("g2", "t2");
    let second = t.store.create_stream(&other, &other_key).await.unwrap().expect("created");

    // Secrets are sealed: not in the spec column, back through stream_secrets.
    let stored = t.store.get_stream(first.id).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&stored.spec).unwrap().contains("sasl-secret-pw"));
    assert_eq!(t.store.stream_secrets(&stored).unwrap().sasl_password.as_deref(), Some("sasl-secret-pw"));

    // Renaming onto another stream's name is refused; an alter without the
    // password keeps it.
    assert!(matches!(t.store.update_stream(second.id, &spec, &key).await.unwrap(), StreamUpdate::NameTaken));
    let (mut renamed, renamed_key) = parse("g3", "t3");
    if let Some(sasl) = renamed.kafka.security.as_mut().and_then(|s| s.sasl.as_mut()) {
        sasl.password = None;
    }
    let StreamUpdate::Updated(updated) = t.store.update_stream(second.id, &renamed, &renamed_key).await.unwrap() else {
        panic!("not updated")
    };
    assert_eq!((updated.version, updated.key.scope.as_str()), (2, "g3"));
    assert_eq!(t.store.stream_secrets(&updated).unwrap().sasl_password.as_deref(), Some("sasl-secret-pw"));
    assert!(matches!(t.store.update_stream(999, &renamed, &renamed_key).await.unwrap(), StreamUpdate::NotFound));

    assert_eq!(t.store.list_streams().await.unwrap().len(), 2);
    assert!(t.store.delete_stream(first.id).await.unwrap());
    assert!(!t.store.delete_stream(first.id).await.unwrap());
    assert_eq!(t.store.list_streams().await.unwrap().len(), 1);
}
