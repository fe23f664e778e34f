//! Who may do what over real HTTP: roles, the auth scheme, throttled
//! logins, and paths that answer nothing without credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_control::auth::Policy;
use dts_control::Limits;
use dts_core::ErrorCode;
use dts_e2e::{Backend, TestApi, SEED_BODY};

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", B64.encode(format!("{user}:{password}")))
}

const USERS: &str = "root:rootpw,ops:opspw:operator,dash:dashpw:viewer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_user_may_change() {
    let lenient = Policy { failures_per_window: 1000, ..Policy::default() };
    let Some(api) = TestApi::start_custom(Backend::Sqlite, Limits::default(), USERS, lenient).await else { return };
    let (root, ops, dash) = (basic("root", "rootpw"), basic("ops", "opspw"), basic("dash", "dashpw"));
    // An operator submits and acts on tasks.
    let r = api.call_as("POST", "/v1/dispatch/submit", Some(SEED_BODY), Some(&ops)).await;
    let id = r.expect_ok()["id"].as_i64().unwrap();
    api.call_as("POST", &format!("/v1/dispatch/stop/{id}"), None, Some(&ops)).await.expect_ok();
    // A viewer reads everything...
    for path in ["/v1/task/list".to_owned(), format!("/v1/task/{id}"), "/v1/workers".to_owned()] {
        api.call_as("GET", &path, None, Some(&dash)).await.expect_ok();
    }
    // ... and changes nothing, whatever the endpoint (unknown ones included).
    let changes = [
        ("POST", "/v1/dispatch/submit".to_owned(), Some(SEED_BODY)),
        ("PUT", format!("/v1/dispatch/alter/{id}"), Some(SEED_BODY)),
        ("POST", format!("/v1/dispatch/start/{id}"), None),
        ("POST", format!("/v1/dispatch/stop/{id}"), None),
        ("DELETE", format!("/v1/task/{id}"), None),
        ("POST", "/v1/workers/n1/drain".to_owned(), None),
        ("POST", "/v1/no/such/thing".to_owned(), None),
    ];
    for (method, path, body) in &changes {
        let r = api.call_as(method, path, *body, Some(&dash)).await;
        r.expect_error(ErrorCode::Forbidden);
        assert!(r.body["message"].as_str().unwrap().contains("viewer"), "{}", r.raw);
    }
    let detail = api.call_as("GET", &format!("/v1/task/{id}"), None, Some(&root)).await;
    assert_eq!(detail.expect_ok()["desired_state"], "stopped", "the viewer's start did nothing");
    assert_eq!(api.call_as("GET", "/v1/task/list", None, Some(&root)).await.expect_ok()["total"], 1);
    // An admin may do all of it.
    api.call_as("DELETE", &format!("/v1/task/{id}"), None, Some(&root)).await.expect_ok();
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_scheme_is_case_insensitive() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let encoded = B64.encode("replicator:dtsfor3.1415926");
    for scheme in ["Basic", "BASIC", "basic", "bAsIc"] {
        let header = format!("{scheme} {encoded}");
        api.call_as("GET", "/v1/task/list", None, Some(&header)).await.expect_ok();
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_with_retry_after() {
    let policy = Policy { failures_per_window: 5, window: Duration::from_secs(60), ..Policy::default() };
    let Some(api) = TestApi::start_custom(Backend::Sqlite, Limits::default(), USERS, policy).await else { return };
    let wrong = basic("root", "guess");
    for _ in 0..5 {
        api.call_as("GET", "/v1/task/list", None, Some(&wrong)).await.expect_error(ErrorCode::Unauthorized);
    }
    // The sixth is refused before any password is checked, the right one too.
    for header in [wrong.as_str(), &basic("root", "rootpw")] {
        let r = api.call_as("GET", "/v1/task/list", None, Some(header)).await;
        r.expect_error(ErrorCode::TooManyRequests);
        let secs: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=61).contains(&secs), "Retry-After {secs}");
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_paths_answer_nothing_without_the_cluster_token() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    // Known and unknown internal paths, any method, even with an operator's
    // valid Basic credentials: 401 with the envelope, never 404 or 405.
    let seed = dts_e2e::SEED_AUTH_HEADER;
    for (method, path) in [
        ("POST", "/internal/v1/heartbeat"),
        ("GET", "/internal/v1/heartbeat"),
        ("POST", "/internal/v1/tasks/1/progress"),
        ("GET", "/internal/v1/no-such-thing"),
        ("DELETE", "/internal/"),
    ] {
        for auth in [None, Some(seed)] {
            let r = api.call_as(method, path, Some("{}"), auth).await;
            r.expect_error(ErrorCode::Unauthorized);
        }
    }
    api.stop().await;
}
