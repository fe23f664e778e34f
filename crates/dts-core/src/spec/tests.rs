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
fn alter_refuses_a_new_user_or_incr_and_a_new_server_without_gtids() {
    use super::Resumable::{OnAnyServer, OnThisServer};
    let current = parse(SEED_BODY).unwrap();
    let moved = parse(&with_task(|t| t["source"]["host"] = "10.0.0.9".into())).unwrap();
    let e = moved.check_alter(&current, OnThisServer).unwrap_err();
    assert_eq!(e.code, ErrorCode::ImmutableField);
    assert!(e.message.contains("binlog file and offset"), "{e}");
    moved.check_alter(&current, OnAnyServer).unwrap();
    let other_port = parse(&with_task(|t| t["source"]["port"] = 3307.into())).unwrap();
    other_port.check_alter(&current, OnAnyServer).unwrap();
    assert!(other_port.check_alter(&current, OnThisServer).is_err());
    let other_user = parse(&with_task(|t| t["source"]["username"] = "root".into())).unwrap();
    for resumable in [OnAnyServer, OnThisServer] {
        assert_eq!(other_user.check_alter(&current, resumable).unwrap_err().field, "task.source");
    }
    let full = parse(&with_task(|t| t["incr"] = false.into())).unwrap();
    assert_eq!(full.check_alter(&current, OnAnyServer).unwrap_err().field, "task.incr");
    let rotated = parse(&with_task(|t| t["source"]["password"] = "new-secret".into())).unwrap();
    rotated.check_alter(&current, OnThisServer).unwrap();
    let retopic = parse(&with_task(|t| t["kafka"]["topic"] = "other".into())).unwrap();
    retopic.check_alter(&current, OnThisServer).unwrap();
}

#[test]
fn ipv6_source_addresses_are_bracketed() {
    let spec = parse(&with_task(|t| t["source"]["host"] = "::1".into())).unwrap();
    assert_eq!(spec.source.addr(), "[::1]:5306");
}

/// Values that could never work, or could grow the store and the logs
/// without bound, are refused with the field's code and a short message.
#[test]
fn oversized_and_unusable_values_are_refused_with_short_messages() {
    let huge = "h".repeat(1_000_000);
    let cases: Vec<(String, ErrorCode, &str)> = vec![
        (with_task(|t| t["source"]["host"] = huge.clone().into()), ErrorCode::InvalidSource, "task.source.host"),
        (with_task(|t| t["source"]["host"] = "db\u{0}.example".into()), ErrorCode::InvalidSource, "task.source.host"),
        (with_task(|t| t["source"]["host"] = "http://evil/".into()), ErrorCode::InvalidSource, "task.source.host"),
        (with_task(|t| t["source"]["host"] = "127.0.0.1:3306".into()), ErrorCode::InvalidSource, "task.source.host"),
        (with_task(|t| t["source"]["username"] = "a\nb".into()), ErrorCode::InvalidSource, "task.source.username"),
        (
            with_task(|t| t["source"]["username"] = "u".repeat(81).into()),
            ErrorCode::InvalidSource,
            "task.source.username",
        ),
        (
            with_task(|t| t["filters"][0]["dbname"] = "d\u{1b}[31m".into()),
            ErrorCode::InvalidFilters,
            "task.filters[0].dbname",
        ),
        (
            with_task(|t| t["filters"][0]["dbname"] = "d\u{0}".into()),
            ErrorCode::InvalidFilters,
            "task.filters[0].dbname",
        ),
        (with_task(|t| t["filters"][0]["match"] = "/".into()), ErrorCode::InvalidTableRegex, "task.filters[0].match"),
        (
            with_task(|t| t["filters"][0]["match"] = "/abc".into()),
            ErrorCode::InvalidTableRegex,
            "task.filters[0].match",
        ),
        (with_task(|t| t["filters"][0]["match"] = "t\u{0}".into()), ErrorCode::InvalidFilters, "task.filters[0].match"),
        (
            with_task(|t| t["filters"][0]["match"] = format!("/{}(/", "a".repeat(2000)).into()),
            ErrorCode::InvalidFilters,
            "task.filters[0].match",
        ),
        (
            with_task(|t| t["filters"][0]["filter"] = format!("a = '{}'", "x".repeat(70_000)).into()),
            ErrorCode::InvalidRowFilter,
            "task.filters[0].filter",
        ),
        (with_task(|t| t["kafka"]["topic"] = "__consumer_offsets".into()), ErrorCode::InvalidKafka, "task.kafka.topic"),
        (
            with_task(|t| t["kafka"]["topic"] = "__transaction_state".into()),
            ErrorCode::InvalidKafka,
            "task.kafka.topic",
        ),
        (with_task(|t| t["kafka"]["addr"] = huge.clone().into()), ErrorCode::InvalidKafka, "task.kafka.addr"),
        (
            with_task(|t| t["kafka"]["exclude_columns"] = serde_json::json!([huge.clone()])),
            ErrorCode::InvalidExcludeColumns,
            "task.kafka.exclude_columns[0]",
        ),
        (
            with_task(|t| {
                t["filters"] = serde_json::json!(vec![serde_json::json!({"dbname": "d", "match": "t"}); 1001])
            }),
            ErrorCode::InvalidFilters,
            "task.filters",
        ),
    ];
    for (body, code, field) in cases {
        let e = parse(&body).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), (code, field), "{}", e.message);
        assert!(e.message.len() < 400, "short message for {field}: {} bytes", e.message.len());
    }
    // A long regex that does not compile: the message does not echo it whole.
    let bad_regex = with_task(|t| t["filters"][0]["match"] = format!("/{}(/", "a".repeat(900)).into());
    let e = parse(&bad_regex).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidTableRegex, "{e}");
    assert!(e.message.len() < 400, "{} bytes", e.message.len());
    // IPv6 addresses keep their colons.
    parse(&with_task(|t| t["source"]["host"] = "::1".into())).unwrap();
}

/// A chain of thousands of AND/OR terms is refused at submit with a clear
/// error instead of overflowing the stack; one at the limit parses.
#[test]
fn long_filter_chains_are_capped_not_crashed() {
    let chain = |n: usize, op: &str| (0..n).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(op);
    for op in [" AND ", " OR "] {
        let long = with_task(|t| t["filters"][0]["filter"] = chain(1_500, op).into());
        let e = parse(&long).unwrap_err();
        assert_eq!((e.code, e.field.as_str()), (ErrorCode::InvalidRowFilter, "task.filters[0].filter"));
        assert!(e.message.contains("at most 1000 conditions"), "{e}");
        let at_limit = with_task(|t| t["filters"][0]["filter"] = chain(crate::filter::MAX_PREDICATES, op).into());
        parse(&at_limit).unwrap();
    }
    let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    let e = parse(&with_task(|t| t["filters"][0]["filter"] = deep.into())).unwrap_err();
    assert!(e.message.contains("levels of nesting"), "{e}");
}

#[test]
fn source_tls_modes_parse_and_a_ca_needs_a_verifying_mode() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for mode in ["disabled", "preferred", "required", "verify_ca", "verify_identity"] {
        let spec = parse(&with_task(|t| t["source"]["tls"] = serde_json::json!({"mode": mode}))).unwrap();
        assert_eq!(serde_json::to_value(spec.source.tls.mode).unwrap(), mode);
    }
    assert_eq!(parse(SEED_BODY).unwrap().source.tls.mode, TlsMode::Preferred, "MySQL's default");
    let verify = with_task(|t| t["source"]["tls"] = serde_json::json!({"mode": "verify_ca", "ca_pem": pem}));
    assert_eq!(parse(&verify).unwrap().source.tls.ca_pem.as_deref(), Some(pem));
    let cases = [
        (serde_json::json!({"mode": "required", "ca_pem": pem}), "task.source.tls.ca_pem"),
        (serde_json::json!({"mode": "verify_ca", "ca_pem": "not pem"}), "task.source.tls.ca_pem"),
        (serde_json::json!({"mode": "sometimes"}), "task.source.tls.mode"),
        (serde_json::json!({"mode": "required", "cert": "x"}), "task.source.tls"),
    ];
    for (tls, field) in cases {
        let e = parse(&with_task(|t| t["source"]["tls"] = tls.clone())).unwrap_err();
        assert!(e.field.starts_with(field), "{tls}: {e}");
    }
}

#[test]
fn kafka_security_is_checked_and_its_secrets_never_serialize() {
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    let with = |sec: serde_json::Value| with_task(|t| t["kafka"]["security"] = sec);
    let full = with(serde_json::json!({
        "protocol": "SASL_SSL", "ca_pem": cert, "cert_pem": cert, "key_pem": key,
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u", "password": "sasl-pw"},
    }));
    let spec = parse(&full).unwrap();
    spec.check_secrets_present().unwrap();
    let text = serde_json::to_string(&spec).unwrap();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("sasl-pw"), "{text}");
    assert!(text.contains("SCRAM-SHA-512") && text.contains("SASL_SSL"), "{text}");
    let secrets = KafkaSecrets::of(&spec.kafka);
    assert_eq!((secrets.key_pem.as_deref(), secrets.sasl_password.as_deref()), (Some(key), Some("sasl-pw")));
    // Left out on alter, the stored ones come back.
    let mut bare: TaskSpec = serde_json::from_str(&text).unwrap();
    assert!(bare.check_secrets_present().is_err());
    secrets.keep_unless_given(&mut bare.kafka);
    assert_eq!(bare.kafka, spec.kafka);

    let cases = [
        (serde_json::json!({"protocol": "PLAINTEXT", "ca_pem": cert}), "task.kafka.security.ca_pem"),
        (serde_json::json!({"protocol": "SASL_SSL"}), "task.kafka.security.sasl"),
        (
            serde_json::json!({"protocol": "SSL", "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"}}),
            "task.kafka.security.sasl",
        ),
        (serde_json::json!({"protocol": "SSL", "key_pem": key}), "task.kafka.security.cert_pem"),
        (serde_json::json!({"protocol": "SSL", "ca_pem": "nope"}), "task.kafka.security.ca_pem"),
        (serde_json::json!({"protocol": "SSL", "cert_pem": cert, "key_pem": "nope"}), "task.kafka.security.key_pem"),
        (serde_json::json!({"protocol": "TLS"}), "task.kafka.security.protocol"),
        (
            serde_json::json!({"protocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "GSSAPI", "username": "u"}}),
            "task.kafka.security.sasl.mechanism",
        ),
        (
            serde_json::json!({"protocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "username": ""}}),
            "task.kafka.security.sasl.username",
        ),
    ];
    for (sec, field) in cases {
        let e = parse(&with(sec.clone())).unwrap_err();
        assert!(matches!(e.code, ErrorCode::InvalidKafka | ErrorCode::InvalidField), "{sec}: {e}");
        assert!(e.field.starts_with(field), "{sec}: {e}");
    }
    // A new task needs its secrets.
    let no_password =
        with(serde_json::json!({"protocol": "SASL_PLAINTEXT", "sasl": {"mechanism": "PLAIN", "username": "u"}}));
    assert_eq!(
        parse(&no_password).unwrap().check_secrets_present().unwrap_err().field,
        "task.kafka.security.sasl.password"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// JSON values of every shape, to put where the seed's fields go.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,24}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: &[&str] = &[
        "source.host",
        "source.port",
        "source.username",
        "source.password",
        "source.tls",
        "source.tls.mode",
        "kafka.addr",
        "kafka.topic",
        "kafka.topic_mode",
        "kafka.partition_mode",
        "kafka.partition_columns",
        "kafka.exclude_columns",
        "kafka.security",
        "kafka.security.sasl",
        "filters",
        "filters.0.match",
        "filters.0.filter",
        "filters.0.dbname",
        "rate_limit",
        "rate_limit.rate",
        "incr",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The task-spec parser's fuzz target: arbitrary bytes are refused
        /// with a code and a field, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse(&String::from_utf8_lossy(&bytes)) {
                prop_assert!(!e.message.is_empty() && !e.field.is_empty());
            }
        }

        /// The seed's body with one field replaced by any JSON value: parsed
        /// and validated, or refused naming a field; never a panic.
        #[test]
        fn any_value_in_any_field_never_panics(field in prop::sample::select(FIELDS), value in any_json()) {
            let body = with_task(|t| {
                let mut at = t;
                let parts: Vec<&str> = field.split('.').collect();
                for (i, part) in parts.iter().enumerate() {
                    let last = i + 1 == parts.len();
                    let next = if let Ok(n) = part.parse::<usize>() { &mut at[n] } else { &mut at[*part] };
                    if last {
                        *next = value.clone();
                        return;
                    }
                    if next.is_null() {
                        *next = serde_json::json!({});
                    }
                    at = next;
                }
            });
            match parse(&body) {
                Ok(spec) => { let _ = spec.check_secrets_present(); }
                Err(e) => prop_assert!(!e.message.is_empty() && e.message.len() < 2000, "{}", e),
            }
        }
    }
}
