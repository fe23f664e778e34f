//! The OpenAPI document is kept true: every route the server registers is
//! in it and every documented operation is registered (both read from the
//! route tables' source), and its example bodies are accepted by the real
//! server, whose answers have the documented envelope.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use dts_e2e::{Backend, TestApi};
use serde_json::Value;

fn doc() -> Value {
    serde_json::from_str(dts_control::OPENAPI).expect("openapi.json is JSON")
}

/// (method, path) of every documented operation.
fn documented() -> BTreeSet<(String, String)> {
    let doc = doc();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// (method, path) of every `resource(...)` with its `.route(web::METHOD()`
/// calls in a route table's source; Timeplus' `{prefix}` loop expanded.
fn registered_in(source: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let pieces: Vec<&str> = source.split("resource(").skip(1).collect();
    for piece in pieces {
        let literal = piece.trim_start_matches("format!(");
        let Some(rest) = literal.strip_prefix('"') else { continue };
        let path = &rest[..rest.find('"').unwrap()];
        let methods: Vec<String> =
            piece.split(".route(web::").skip(1).map(|m| m[..m.find('(').unwrap()].to_uppercase()).collect();
        let paths: Vec<String> = if path.contains("{prefix}") {
            ["/{workspace}/api/v1beta2", "/api/v1beta2"]
                .iter()
                .map(|p| path.replace("{prefix}", p).replace("{{", "{").replace("}}", "}"))
                .collect()
        } else {
            vec![path.to_owned()]
        };
        for p in paths {
            for m in &methods {
                out.insert((m.clone(), p.clone()));
            }
        }
    }
    out
}

#[test]
fn every_registered_route_is_documented_and_back() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates");
    let mut registered = BTreeSet::new();
    for file in ["dts-control/src/lib.rs", "dts-control/src/dashboard/mod.rs", "dts-ingest/src/lib.rs"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        registered.extend(registered_in(&text));
    }
    assert!(registered.len() > 40, "the route tables were read: {registered:?}");
    let documented = documented();
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(missing.is_empty(), "registered but not in openapi.json: {missing:?}");
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(stale.is_empty(), "in openapi.json but not registered: {stale:?}");
}

#[test]
fn operations_are_complete() {
    let doc = doc();
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(op["summary"].is_string(), "{id} has no summary");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{id} has no responses");
            // Every path template parameter is declared.
            for name in path.split('{').skip(1).map(|s| &s[..s.find('}').unwrap()]) {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{id}: path parameter {name} is not declared");
            }
        }
    }
}

/// Operations of the management API, in an order that makes each example
/// meaningful (creations first, deletions last), with `{id}` = 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_are_accepted_by_the_server() {
    let Some(api) = TestApi::start(Backend::Sqlite).await else { return };
    let doc = doc();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !(path.starts_with("/v1/") || matches!(path.as_str(), "/healthz" | "/readyz" | "/openapi.json")) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    let rank = |m: &str, p: &str| match (m, p.contains('{')) {
        ("POST", false) => 0,
        ("DELETE", _) => 3,
        (_, false) => 1,
        _ => 2,
    };
    // Keys name the stream created before them; a resource's parts are
    // deleted before it.
    let depth = |m: &str, p: &str| if m == "DELETE" { std::cmp::Reverse(p.len()) } else { std::cmp::Reverse(0) };
    ops.sort_by_key(|(m, p, _)| (rank(m, p), p.contains("/keys"), depth(m, p)));
    for (method, path, op) in ops {
        let url = path.replace("{id}", "1").replace("{name}", "ops");
        let example = op["requestBody"]["content"]["application/json"]["example"].clone();
        let body = (!example.is_null()).then(|| example.to_string());
        let reply = api.call(&method, &url, body.as_deref()).await;
        let id = op["operationId"].as_str().unwrap();
        let enveloped = op["responses"]["200"]["content"]["application/json"]["schema"]["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "code"));
        if !enveloped {
            assert_eq!(reply.status, 200, "{id}: {method} {url}");
            continue;
        }
        let code = reply.code();
        assert_ne!(code, 40404, "{method} {url} is documented but not served");
        assert_ne!(code, 40500, "{method} {url} is documented but not served with that method");
        // Worker actions need a worker node, which a standalone API has none of.
        if !id.contains("Worker") || id == "listWorkers" {
            assert_eq!(code, 0, "{id}: {method} {url} with the documented example: {}", reply.raw);
        }
    }
}
