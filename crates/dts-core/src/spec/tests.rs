#![allow(clippy::unwrap_used)]

use super::*;

/// The body of the seed's submit example, byte for byte (after shell unquoting).
pub const SEED_BODY: &str = r#"{"task":{"source":{"host":"127.0.0.1","port":5306,"username":"xes_replicator","password":"IYQBXGil84d44ee92cLjLHankV2rVyCg+"},"kafka":{"addr":"127.0.0.1:9092","topic":"replicator_test","flat_format":false},"filters":[{"dbname":"oa_data_service","match":"/xes_class_students_\\d+/","filter":""},{"dbname":"oa_data_service","match":"check_delay","filter":""}],"incr":true}}"#;

fn parse(body: &str) -> Result<TaskSpec, SpecError> {
    let spec = parse_submit_body(body.as_bytes())?;
    spec.validate()?;
    Ok(spec)
}

fn with_task(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(SEED_BODY).unwrap();
    edit(&mut v["task"]);
    v.to_string()
}

fn err_of(body: &str) -> (ErrorCode, String) {
    let e = parse(body).unwrap_err();
    (e.code, e.field)
}

#[test]
fn the_seed_example_parses() {
    let spec = parse(SEED_BODY).unwrap();
    assert_eq!(spec.source.addr(), "127.0.0.1:5306");
    assert_eq!(spec.source.password.as_ref().unwrap().expose(), "IYQBXGil84d44ee92cLjLHankV2rVyCg+");
    assert_eq!(spec.kafka.topic.as_deref(), Some("replicator_test"));
    assert_eq!(spec.filters.len(), 2);
    assert_eq!(spec.filters[0].table, r"/xes_class_students_\d+/");
    assert!(spec.incr);
    assert_eq!(spec.dest_addr(), "127.0.0.1:9092");
}

#[test]
fn every_documented_option_parses() {
    let body = with_task(|t| {
        t["kafka"] = serde_json::json!({
            "addr": "k1:9092, k2:9093", "topic": "t", "flat_format": true, "topic_mode": 1,
            "partition_mode": "column", "partition_columns": ["uid"],
            "producer_partition_by_fallback": "primary_key", "exclude_columns": ["secret", "db.tbl.col"]
        });
        t["rate_limit"] = serde_json::json!({"rate": 500, "capacity": 1000});
        t["filters"][0]["filter"] = serde_json::json!("grade >= 3 AND city IN ('a', 'b')");
    });
    let spec = parse(&body).unwrap();
    assert_eq!(spec.kafka.topic_mode, Some(TopicMode::PerTable));
    assert_eq!(spec.kafka.partition_mode, Some(PartitionMode::Column));
    assert_eq!(spec.kafka.producer_partition_by_fallback, Some(PartitionFallback::PrimaryKey));
    assert_eq!(spec.rate_limit.unwrap().capacity(), 1000);
    assert_eq!(spec.dest_addr(), "k1:9092,k2:9093");
}

#[test]
fn the_parameter_tables_filter_spelling_is_accepted() {
    let body = SEED_BODY.replace("\"filters\"", "\"filter\"");
    assert_eq!(parse(&body).unwrap().filters.len(), 2);
}

#[test]
fn serialized_spec_never_holds_the_password() {
    let spec = parse(SEED_BODY).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("IYQBXGil84d44ee92cLjLHankV2rVyCg+"), "{json}");
    assert!(!format!("{spec:?}").contains("IYQBXGil84d44ee92cLjLHankV2rVyCg+"));
    // And it reads back as the same spec without the password.
    let back: TaskSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back.source.password, None);
    assert_eq!(back.kafka, spec.kafka);
}

#[test]
fn malformed_and_mistyped_bodies_name_the_problem() {
    assert_eq!(err_of("{\"task\":"), (ErrorCode::MalformedJson, "task".into()));
    assert_eq!(err_of("not json").0, ErrorCode::MalformedJson);
    assert_eq!(err_of("").0, ErrorCode::MalformedJson);
    assert_eq!(err_of("{}"), (ErrorCode::InvalidField, "body".into()));
    assert_eq!(err_of("[]").0, ErrorCode::InvalidField);
    let unknown = with_task(|t| t["kafka"]["topik"] = serde_json::json!("x"));
    let e = parse(&unknown).unwrap_err();
    assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidField, "task.kafka.topik"));
    assert!(e.message.contains("unknown field `topik`"), "{}", e.message);
    let mistyped = with_task(|t| t["source"]["port"] = serde_json::json!("5306"));
    assert_eq!(err_of(&mistyped), (ErrorCode::InvalidField, "task.source.port".into()));
    let missing = with_task(|t| {
        t["source"].as_object_mut().unwrap().remove("host");
    });
    let e = parse(&missing).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidField);
    assert!(e.message.contains("missing field `host`"), "{}", e.message);
    let big_port = with_task(|t| t["source"]["port"] = serde_json::json!(70000));
    assert_eq!(err_of(&big_port), (ErrorCode::InvalidField, "task.source.port".into()));
    let bad_mode = with_task(|t| t["kafka"]["topic_mode"] = serde_json::json!(2));
    let e = parse(&bad_mode).unwrap_err();
    assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidField, "task.kafka.topic_mode"));
    assert!(e.message.contains("topic_mode must be 0"), "{}", e.message);
    let bad_partition = with_task(|t| t["kafka"]["partition_mode"] = serde_json::json!("random"));
    assert_eq!(err_of(&bad_partition), (ErrorCode::InvalidField, "task.kafka.partition_mode".into()));
}

#[test]
fn semantic_errors_have_specific_codes() {
    let cases: Vec<(String, ErrorCode, &str)> = vec![
        (with_task(|t| t["source"]["host"] = "".into()), ErrorCode::InvalidSource, "task.source.host"),
        (with_task(|t| t["source"]["port"] = 0.into()), ErrorCode::InvalidSource, "task.source.port"),
        (with_task(|t| t["source"]["username"] = "".into()), ErrorCode::InvalidSource, "task.source.username"),
        (with_task(|t| t["kafka"]["addr"] = "localhost".into()), ErrorCode::InvalidKafka, "task.kafka.addr"),
        (with_task(|t| t["kafka"]["addr"] = "a:1,".into()), ErrorCode::InvalidKafka, "task.kafka.addr"),
        (with_task(|t| t["kafka"]["topic"] = "bad topic".into()), ErrorCode::InvalidKafka, "task.kafka.topic"),
        (
            with_task(|t| {
                t["kafka"].as_object_mut().unwrap().remove("topic");
            }),
            ErrorCode::InvalidKafka,
            "task.kafka.topic",
        ),
        (with_task(|t| t["filters"] = serde_json::json!([])), ErrorCode::InvalidFilters, "task.filters"),
        (with_task(|t| t["filters"][1]["dbname"] = "".into()), ErrorCode::InvalidFilters, "task.filters[1].dbname"),
        (
            with_task(|t| t["filters"][0]["match"] = "/a(/".into()),
            ErrorCode::InvalidTableRegex,
            "task.filters[0].match",
        ),
        (
            with_task(|t| t["filters"][1]["filter"] = "id = ".into()),
            ErrorCode::InvalidRowFilter,
            "task.filters[1].filter",
        ),
        (
            with_task(|t| t["rate_limit"] = serde_json::json!({"rate": 0})),
            ErrorCode::InvalidRateLimit,
            "task.rate_limit.rate",
        ),
        (
            with_task(|t| t["rate_limit"] = serde_json::json!({"rate": -5, "capacity": 5})),
            ErrorCode::InvalidRateLimit,
            "task.rate_limit.rate",
        ),
        (
            with_task(|t| t["rate_limit"] = serde_json::json!({"rate": 100, "capacity": 0})),
            ErrorCode::InvalidRateLimit,
            "task.rate_limit.capacity",
        ),
        (
            with_task(|t| t["rate_limit"] = serde_json::json!({"rate": MAX_RATE + 1})),
            ErrorCode::InvalidRateLimit,
            "task.rate_limit.rate",
        ),
        (
            with_task(|t| t["kafka"]["partition_mode"] = "column".into()),
            ErrorCode::InvalidPartition,
            "task.kafka.partition_columns",
        ),
        (
            with_task(|t| t["kafka"]["partition_columns"] = serde_json::json!(["a"])),
            ErrorCode::InvalidPartition,
            "task.kafka.partition_columns",
        ),
        (
            with_task(|t| t["kafka"]["producer_partition_by_fallback"] = "table".into()),
            ErrorCode::InvalidPartition,
            "task.kafka.producer_partition_by_fallback",
        ),
        (
            with_task(|t| t["kafka"]["exclude_columns"] = serde_json::json!(["a.b"])),
            ErrorCode::InvalidExcludeColumns,
            "task.kafka.exclude_columns[0]",
        ),
        (
            with_task(|t| {
                t["kafka"]["partition_mode"] = "column".into();
                t["kafka"]["partition_columns"] = serde_json::json!(["uid", "ssn"]);
                t["kafka"]["exclude_columns"] = serde_json::json!(["name", "db.users.ssn"]);
            }),
            ErrorCode::InvalidExcludeColumns,
            "task.kafka.exclude_columns[1]",
        ),
    ];
    for (body, code, field) in cases {
        let e = parse(&body).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), (code, field), "{body}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn alter_refuses_a_new_source_or_incr_but_allows_a_new_password() {
    let current = parse(SEED_BODY).unwrap();
    let moved = parse(&with_task(|t| t["source"]["host"] = "10.0.0.9".into())).unwrap();
    assert_eq!(moved.check_alter(&current).unwrap_err().code, ErrorCode::ImmutableField);
    let other_user = parse(&with_task(|t| t["source"]["username"] = "root".into())).unwrap();
    assert_eq!(other_user.check_alter(&current).unwrap_err().field, "task.source");
    let full = parse(&with_task(|t| t["incr"] = false.into())).unwrap();
    assert_eq!(full.check_alter(&current).unwrap_err().field, "task.incr");
    let rotated = parse(&with_task(|t| t["source"]["password"] = "new-secret".into())).unwrap();
    rotated.check_alter(&current).unwrap();
    let retopic = parse(&with_task(|t| t["kafka"]["topic"] = "other".into())).unwrap();
    retopic.check_alter(&current).unwrap();
}

#[test]
fn ipv6_source_addresses_are_bracketed() {
    let spec = parse(&with_task(|t| t["source"]["host"] = "::1".into())).unwrap();
    assert_eq!(spec.source.addr(), "[::1]:5306");
}
