//! API users managed over the API: `GET`/`POST /v1/users`,
//! `PUT`/`DELETE /v1/users/{name}`.
//!
//! Stored users live in the task store, so every control plane sees a change
//! within [`RELOAD_EVERY`]; the node that made it applies it at once.
//! Users from the config file or `DTS_AUTH_USERS` are listed but cannot be
//! changed here (the file is the source of truth for them). The user
//! generated at first start stops working as soon as another admin exists,
//! and can be deleted. No change may leave the node without an admin.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use dts_core::spec::echo;
use dts_core::ErrorCode;
use dts_store::users::StoredUser;
use dts_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{check_name, Authenticator, Identity, Role};
use crate::envelope::{ok, ApiError};
use crate::handlers::read_body;
use crate::AppState;

/// How often each node re-reads the stored users.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// Shortest and longest accepted password, in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=1024;

/// Where a user comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// The config file or `DTS_AUTH_USERS`: read-only here.
    Config,
    /// Created over the API.
    Api,
    /// Generated at first start.
    Generated,
}

#[derive(Debug, Serialize)]
struct UserView {
    name: String,
    role: Role,
    source: Source,
    /// False for the generated user once another admin exists.
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<i64>,
}

/// Everyone the node knows, and who may log in.
fn effective(configured: &[(String, Role)], stored: &[StoredUser]) -> Vec<UserView> {
    let mut out: Vec<UserView> = configured
        .iter()
        .map(|(name, role)| UserView {
            name: name.clone(),
            role: *role,
            source: Source::Config,
            active: true,
            created_at: None,
        })
        .collect();
    for u in stored {
        if configured.iter().any(|(n, _)| *n == u.name) {
            continue;
        }
        let Some(role) = Role::parse(&u.role) else {
            tracing::warn!(user = ?u.name, role = ?u.role, "a stored user has an unknown role; it cannot log in");
            continue;
        };
        let source = if u.generated { Source::Generated } else { Source::Api };
        out.push(UserView { name: u.name.clone(), role, source, active: true, created_at: Some(u.created_at) });
    }
    // The generated admin only exists to let the first admin in.
    let other_admin = out.iter().any(|u| u.role == Role::Admin && u.source != Source::Generated);
    for u in &mut out {
        if u.source == Source::Generated && other_admin {
            u.active = false;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Reads the stored users and makes them the ones that can log in.
pub async fn reload(store: &Store, auth: &Authenticator) -> Result<(), StoreError> {
    let stored = store.stored_users().await?;
    let by_name: std::collections::HashMap<&str, &StoredUser> = stored.iter().map(|u| (u.name.as_str(), u)).collect();
    let active = effective(&auth.configured(), &stored)
        .into_iter()
        .filter(|u| u.active && u.source != Source::Config)
        .filter_map(|u| by_name.get(u.name.as_str()).map(|s| (u.name, s.password_hash.clone(), u.role)))
        .collect();
    auth.set_stored(active);
    Ok(())
}

/// Keeps the stored users current until `shutdown` completes.
pub async fn follow(store: Store, auth: Arc<Authenticator>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        match reload(&store, &auth).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("stored API users readable again");
            }
            Ok(()) => {}
            // The last users read stay in force: a store outage must not lock everyone out.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the stored API users; keeping the last ones read");
            }
            Err(_) => {}
        }
    }
}

fn identity(req: &HttpRequest) -> Result<Identity, ApiError> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the request has no authenticated user"))
}

fn require_admin(who: &Identity) -> Result<(), ApiError> {
    if who.role == Role::Admin {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!("user {:?} has the {} role; managing users needs an admin", who.name, who.role.as_str()),
    ))
}

fn user_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::UserNotFound, format!("user {} does not exist", echo(name)))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidField, message)
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !PASSWORD_CHARS.contains(&n) {
        return Err(invalid(format!(
            "user.password must be {} to {} characters (got {n})",
            PASSWORD_CHARS.start(),
            PASSWORD_CHARS.end()
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(invalid("user.password must not contain control characters"));
    }
    Ok(())
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| invalid(format!("user.role {} must be admin, operator or viewer", echo(text))))
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { ErrorCode::MalformedJson } else { ErrorCode::InvalidField };
        ApiError::new(code, format!("request body: {e}"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    user: NewUser,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    user: UserChange,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    password: Option<String>,
    role: Option<String>,
}

/// `GET /v1/users` (admin).
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_admin(&identity(&req)?)?;
    let users = effective(&state.auth.configured(), &state.store.stored_users().await?);
    Ok(ok(json!({ "users": users })))
}

/// `POST /v1/users` with `{"user": {"name", "password", "role"}}` (admin).
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = identity(&req)?;
    require_admin(&who)?;
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let CreateBody { user } = parse_body(&body)?;
    check_name(&user.name).map_err(|e| invalid(format!("user.name: {e}")))?;
    check_password(&user.password)?;
    let role = parse_role(&user.role)?;
    if state.auth.configured().iter().any(|(n, _)| *n == user.name) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("user {} is configured in the config file or DTS_AUTH_USERS", echo(&user.name)),
        ));
    }
    let hash = state.auth.hash(&user.password).await?;
    let stored = StoredUser {
        name: user.name.clone(),
        password_hash: hash,
        role: role.as_str().into(),
        generated: false,
        created_at: 0,
    };
    if !state.store.insert_user_if_absent(&stored).await? {
        return Err(ApiError::new(ErrorCode::Conflict, format!("user {} already exists", echo(&user.name))));
    }
    reload(&state.store, &state.auth).await?;
    tracing::info!(target: "dts::audit", by = ?who.name, user = ?user.name, role = role.as_str(), "user created");
    Ok(ok(json!({ "name": user.name, "role": role })))
}

/// `PUT /v1/users/{name}` with `{"user": {"password"?, "role"?}}`: an admin
/// changes anyone; every user may change their own password.
pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = identity(&req)?;
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let body = read_body(&req, body, state.limits.max_body_bytes).await?;
    let ChangeBody { user } = parse_body(&body)?;
    if user.password.is_none() && user.role.is_none() {
        return Err(invalid("give user.password, user.role or both"));
    }
    let own_password = who.name == name && user.role.is_none();
    if !own_password {
        require_admin(&who)?;
    }
    if let Some(pw) = &user.password {
        check_password(pw)?;
    }
    let role = user.role.as_deref().map(parse_role).transpose()?;
    let stored = state.store.stored_users().await?;
    let configured = state.auth.configured();
    if configured.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("user {} is configured in the config file or DTS_AUTH_USERS; change it there", echo(&name)),
        ));
    }
    if !stored.iter().any(|u| u.name == name) {
        return Err(user_not_found(&name));
    }
    if let Some(role) = role {
        let after: Vec<StoredUser> = stored
            .iter()
            .cloned()
            .map(|mut u| {
                if u.name == name {
                    u.role = role.as_str().into();
                }
                u
            })
            .collect();
        keeps_an_admin(&configured, &stored, &after)?;
    }
    let hash = match &user.password {
        Some(pw) => Some(state.auth.hash(pw).await?),
        None => None,
    };
    if !state.store.update_user(&name, hash.as_deref(), role.map(Role::as_str)).await? {
        return Err(user_not_found(&name));
    }
    reload(&state.store, &state.auth).await?;
    tracing::info!(
        target: "dts::audit", by = ?who.name, user = ?name, password = user.password.is_some(),
        role = role.map(Role::as_str), "user changed"
    );
    Ok(ok(json!({})))
}

/// `DELETE /v1/users/{name}` (admin).
pub async fn delete(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let who = identity(&req)?;
    require_admin(&who)?;
    let name = req.match_info().get("name").unwrap_or_default().to_owned();
    let configured = state.auth.configured();
    if configured.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("user {} is configured in the config file or DTS_AUTH_USERS; remove it there", echo(&name)),
        ));
    }
    let stored = state.store.stored_users().await?;
    if !stored.iter().any(|u| u.name == name) {
        return Err(user_not_found(&name));
    }
    let after: Vec<StoredUser> = stored.iter().filter(|u| u.name != name).cloned().collect();
    keeps_an_admin(&configured, &stored, &after)?;
    if !state.store.delete_user(&name).await? {
        return Err(user_not_found(&name));
    }
    reload(&state.store, &state.auth).await?;
    tracing::info!(target: "dts::audit", by = ?who.name, user = ?name, "user deleted");
    Ok(ok(json!({})))
}

/// Refuses a change after which nobody could manage users. The generated
/// admin counts only while it is still in force: a change may not bring it
/// back (its password was printed at first start, perhaps into a log).
fn keeps_an_admin(configured: &[(String, Role)], before: &[StoredUser], after: &[StoredUser]) -> Result<(), ApiError> {
    let generated_in_force = effective(configured, before).iter().any(|u| u.source == Source::Generated && u.active);
    let admin_left = effective(configured, after)
        .iter()
        .any(|u| u.active && u.role == Role::Admin && (u.source != Source::Generated || generated_in_force));
    if admin_left {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::Conflict, "this would leave no admin; create another admin first"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, role: &str, generated: bool) -> StoredUser {
        StoredUser { name: name.into(), password_hash: String::new(), role: role.into(), generated, created_at: 1 }
    }

    fn active(views: &[UserView]) -> Vec<(&str, bool)> {
        views.iter().map(|u| (u.name.as_str(), u.active)).collect()
    }

    #[test]
    fn the_generated_admin_yields_to_any_other_admin() {
        let gen = stored("admin", "admin", true);
        assert_eq!(active(&effective(&[], std::slice::from_ref(&gen))), [("admin", true)]);
        let viewer = stored("dash", "viewer", false);
        assert_eq!(active(&effective(&[], &[gen.clone(), viewer])), [("admin", true), ("dash", true)]);
        let api_admin = stored("alice", "admin", false);
        assert_eq!(active(&effective(&[], &[gen.clone(), api_admin])), [("admin", false), ("alice", true)]);
        let configured = [("root".to_owned(), Role::Admin)];
        assert_eq!(active(&effective(&configured, &[gen])), [("admin", false), ("root", true)]);
    }

    #[test]
    fn configured_users_shadow_stored_ones_and_unknown_roles_are_dropped() {
        let configured = [("ops".to_owned(), Role::Operator)];
        let views = effective(&configured, &[stored("ops", "admin", false), stored("x", "root", false)]);
        assert_eq!(views.len(), 1);
        assert_eq!((views[0].role, views[0].source), (Role::Operator, Source::Config));
    }

    #[test]
    fn no_change_may_leave_no_admin() {
        let (alice, gen) = (stored("a", "admin", false), stored("admin", "admin", true));
        let viewer = stored("v", "viewer", false);
        assert!(keeps_an_admin(&[], &[], std::slice::from_ref(&alice)).is_ok());
        assert!(
            keeps_an_admin(&[], &[gen.clone(), viewer.clone()], std::slice::from_ref(&gen)).is_ok(),
            "generated, in force"
        );
        assert!(keeps_an_admin(&[], std::slice::from_ref(&gen), &[]).is_err());
        assert!(
            keeps_an_admin(&[], &[gen.clone(), alice], &[gen.clone(), viewer.clone()]).is_err(),
            "deleting the last real admin would bring the generated one back"
        );
        assert!(keeps_an_admin(&[("r".into(), Role::Admin)], &[], &[]).is_ok());
        assert!(keeps_an_admin(
            &[("o".into(), Role::Operator)],
            std::slice::from_ref(&viewer),
            std::slice::from_ref(&viewer)
        )
        .is_err());
    }

    #[test]
    fn passwords_are_checked() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"x".repeat(1025)).is_err());
        assert!(check_password("good password\n").is_err());
    }
}
