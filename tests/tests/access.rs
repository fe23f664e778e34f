//! Who may do what over real HTTP: roles, the auth scheme, throttled
//! logins, and paths that answer nothing without credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dts_control::auth::Policy;
use dts_control::Limits;
use dts_core::cluster_auth::{self, ClusterKey};
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

type Headers = Vec<(&'static str, String)>;

/// A raw internal request with the given cluster headers; (status, proof, body).
async fn internal(api: &TestApi, path: &str, headers: Headers, body: &[u8]) -> (u16, Option<String>, Vec<u8>) {
    internal_at(api.addr, path, headers, body).await
}

async fn internal_at(
    addr: std::net::SocketAddr,
    path: &str,
    headers: Headers,
    body: &[u8],
) -> (u16, Option<String>, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .headers(headers.into_iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect())
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let proof = resp.headers().get(cluster_auth::PROOF_HEADER).map(|v| v.to_str().unwrap().to_owned());
    (status, proof, resp.bytes().await.unwrap().to_vec())
}

fn signed(key: &ClusterKey, path: &str, ts: i64, nonce: &str, body: &[u8]) -> Headers {
    vec![
        (cluster_auth::TIMESTAMP_HEADER, ts.to_string()),
        (cluster_auth::NONCE_HEADER, nonce.to_owned()),
        (cluster_auth::SIGNATURE_HEADER, key.sign_request("POST", path, ts, nonce, body)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_handshake_never_sends_the_token_and_refuses_forgeries_and_replays() {
    let token = "handshake-token";
    let Some(api) = TestApi::start_control(Backend::Sqlite, token).await else { return };
    let key = ClusterKey::new(token);
    let path = "/internal/v1/heartbeat";
    let beat = br#"{"worker_id":"w1","addr":"127.0.0.1:9","capacity":4,"version":"t"}"#;
    let now = dts_core::now_ms();

    // Signed: accepted, and the answer proves the token over its body.
    let first = cluster_auth::new_nonce();
    let (status, proof, body) = internal(&api, path, signed(&key, path, now, &first, beat), beat).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    key.verify_response(&first, 200, &body, &proof.unwrap()).unwrap();
    // A task placed on w1: the next answer carries its source password,
    // sealed for that request only.
    api.call("POST", "/v1/dispatch/submit", Some(SEED_BODY)).await.expect_ok();
    let nonce = cluster_auth::new_nonce();
    let (status, proof, body) = internal(&api, path, signed(&key, path, now, &nonce, beat), beat).await;
    assert_eq!(status, 200);
    key.verify_response(&nonce, 200, &body, &proof.unwrap()).unwrap();
    assert!(!String::from_utf8_lossy(&body).contains(dts_e2e::SEED_PASSWORD_IN_BODY));
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sealed = reply["data"]["tasks"][0]["secrets"].as_str().expect("the task and its sealed secrets");
    let opened: serde_json::Value = serde_json::from_slice(&key.open(&nonce, sealed).unwrap()).unwrap();
    assert_eq!(opened["source_password"], dts_e2e::SEED_PASSWORD_IN_BODY);
    assert!(key.open(&first, sealed).is_err(), "sealed for one request only");

    // The same request again: a replay, to this control plane or to
    // another one of the cluster (which never saw the nonce itself).
    let (status, _, body) = internal(&api, path, signed(&key, path, now, &nonce, beat), beat).await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("replay"));
    let peer = api.peer_control(token);
    let (status, _, body) = internal_at(peer.addr, path, signed(&key, path, now, &nonce, beat), beat).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("replay"));
    // A fresh request to the other control plane is served, and is then
    // refused by the first one.
    let fresh = cluster_auth::new_nonce();
    let (status, _, body) = internal_at(peer.addr, path, signed(&key, path, now, &fresh, beat), beat).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = internal(&api, path, signed(&key, path, now, &fresh, beat), beat).await;
    assert_eq!(status, 401);
    peer.stop().await;
    // Another body under the signature, another path, another token, an old
    // timestamp, the token itself in a header, or nothing: all refused.
    let other = br#"{"worker_id":"evil","addr":"127.0.0.1:9","capacity":4,"version":"t"}"#;
    let n = cluster_auth::new_nonce;
    let cases: Vec<(Headers, &[u8])> = vec![
        (signed(&key, path, now, &n(), beat), other),
        (signed(&key, "/internal/v1/tasks/1/state", now, &n(), beat), beat),
        (signed(&ClusterKey::new("guess"), path, now, &n(), beat), beat),
        (signed(&key, path, now - 10 * 60_000, &n(), beat), beat),
        (vec![("x-dts-cluster-token", token.to_owned())], beat),
        (vec![], beat),
    ];
    for (headers, body) in cases {
        let (status, _, answer) = internal(&api, path, headers, body).await;
        assert_eq!(status, 401, "{}", String::from_utf8_lossy(&answer));
    }
    api.stop().await;
}
