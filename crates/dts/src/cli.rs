//! `dts task ...` and `dts worker list|drain|activate`: a client of the
//! REST API for operators and scripts.
//!
//! Output: a table by default, the API's `data` as JSON with `--json`.
//! Exit codes: 0 on success, 1 when the API refused the call (its message
//! on stderr), 2 for usage, file or connection errors.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::Value;

/// Where the API is and who calls it. Flags win over variables, variables
/// over the client config file.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The dts API's base URL [default: http://127.0.0.1:8080]
    #[arg(long, env = "DTS_SERVER", global = true)]
    pub server: Option<String>,
    /// API user
    #[arg(long, env = "DTS_API_USER", global = true)]
    pub user: Option<String>,
    /// API user's password
    #[arg(long, env = "DTS_API_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// PEM CA certificate to trust for an https server
    #[arg(long, env = "DTS_API_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client config file with `server`, `user`, `password`, `ca` [default: ~/.config/dts/cli.toml]
    #[arg(long, env = "DTS_CLI_CONFIG", global = true)]
    pub cli_config: Option<PathBuf>,
    /// Print the API's data as JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TaskAction {
    /// List tasks (every page)
    List {
        /// Only tasks in this state (Pending, Snapshotting, Running, Stopping, Stopped, Failed)
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one task
    Get { id: i64 },
    /// Submit a task from a JSON file (`-` for stdin), as POST /v1/dispatch/submit takes it
    Submit {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Change a task from a JSON file (`-` for stdin), as PUT /v1/dispatch/alter/ID takes it
    Alter {
        id: i64,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Stop a task (it keeps its checkpoint)
    Stop { id: i64 },
    /// Start a stopped task from its checkpoint
    Start { id: i64 },
    /// Delete a task
    Delete { id: i64 },
    /// Copy tables of a running task again (`--table`), show the copy's
    /// progress (no flag), or cancel it (`--cancel`)
    Snapshot {
        id: i64,
        /// `db.table` to copy again; repeat for several
        #[arg(long = "table", conflicts_with = "cancel")]
        tables: Vec<String>,
        /// Copy only the rows this row filter accepts
        #[arg(long = "where", requires = "tables")]
        condition: Option<String>,
        /// Cancel the task's on-demand snapshot
        #[arg(long)]
        cancel: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkerAction {
    /// List worker nodes
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Move a node's tasks away and give it no new ones
    Drain {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Let a drained node take tasks again
    Activate {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How a CLI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a non-zero code.
    #[error("{message} (code {code})")]
    Api { code: i64, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { .. } => 1,
            Self::Usage(_) | Self::Connect { .. } => 2,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    server: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ca: Option<PathBuf>,
}

/// A client of one dts API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    user: Option<(String, String)>,
}

impl Client {
    pub fn new(args: &ApiArgs) -> Result<Self, CliError> {
        let file = read_client_file(args.cli_config.as_deref())?;
        let base = args
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::Usage(format!("--server must be an http:// or https:// URL, not {base:?}")));
        }
        let user = match (args.user.clone().or(file.user), args.password.clone().or(file.password)) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(CliError::Usage("a user needs a password: --password or DTS_API_PASSWORD".into()))
            }
            (None, Some(_)) => return Err(CliError::Usage("a password needs a user: --user or DTS_API_USER".into())),
        };
        let mut http =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = args.ca.clone().or(file.ca) {
            let pem = std::fs::read(&ca).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("{} is not a PEM certificate: {e}", ca.display())))?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base, user })
    }

    /// Calls the API; the `data` of a zero-code answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|source| CliError::Connect { url: self.base.clone(), source })?;
        let status = res.status();
        let text = res.text().await.map_err(|source| CliError::Connect { url: self.base.clone(), source })?;
        let envelope: Value = serde_json::from_str(&text).map_err(|_| CliError::Api {
            code: i64::from(status.as_u16()),
            message: format!("{url} answered HTTP {status} without the dts envelope; is --server a dts API?"),
        })?;
        let code = envelope.get("code").and_then(Value::as_i64).unwrap_or(-1);
        if code != 0 {
            let message = envelope.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned();
            return Err(CliError::Api { code, message });
        }
        Ok(envelope.get("data").cloned().unwrap_or(Value::Null))
    }
}

fn read_client_file(path: Option<&std::path::Path>) -> Result<ClientFile, CliError> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("HOME") {
            Some(home) => (PathBuf::from(home).join(".config/dts/cli.toml"), false),
            None => return Ok(ClientFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(ClientFile::default()),
        Err(e) => Err(CliError::Usage(format!("cannot read {}: {e}", path.display()))),
    }
}

fn read_json(file: &std::path::Path) -> Result<Value, CliError> {
    let text = if file == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
    };
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", file.display())))
}

/// Runs `dts task ...`; what to print on stdout.
pub async fn task(args: &ApiArgs, action: TaskAction) -> Result<String, CliError> {
    use reqwest::Method;
    let client = Client::new(args)?;
    let out = match action {
        TaskAction::List { state } => {
            let mut tasks = Vec::new();
            for page in 1.. {
                let data = client.call(Method::GET, &format!("/v1/task/list?page={page}&per_page=500"), None).await?;
                let batch = data.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
                let total = data.get("total").and_then(Value::as_u64).unwrap_or(0);
                let empty = batch.is_empty();
                tasks.extend(batch);
                if empty || tasks.len() as u64 >= total {
                    break;
                }
            }
            if let Some(state) = state {
                tasks
                    .retain(|t| t.get("state").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case(&state)));
            }
            if args.json {
                return Ok(Value::Array(tasks).to_string());
            }
            let cols =
                ["id", "state", "source_addr", "dest_addr", "pos", "transaction_time", "service_addr", "message"];
            table(&cols, &tasks)
        }
        TaskAction::Get { id } => {
            let data = client.call(Method::GET, &format!("/v1/task/{id}"), None).await?;
            pretty(&data)
        }
        TaskAction::Submit { file } => {
            let data = client.call(Method::POST, "/v1/dispatch/submit", Some(read_json(&file)?)).await?;
            summary(args, &data, |d| format!("submitted task {}", d.get("id").map_or("?".into(), Value::to_string)))
        }
        TaskAction::Alter { id, file } => {
            let data = client.call(Method::PUT, &format!("/v1/dispatch/alter/{id}"), Some(read_json(&file)?)).await?;
            summary(args, &data, |_| format!("altered task {id}"))
        }
        TaskAction::Stop { id } => {
            let data = client.call(Method::POST, &format!("/v1/dispatch/stop/{id}"), None).await?;
            summary(args, &data, |d| format!("task {id}: {}", state_line(d)))
        }
        TaskAction::Start { id } => {
            let data = client.call(Method::POST, &format!("/v1/dispatch/start/{id}"), None).await?;
            summary(args, &data, |d| format!("task {id}: {}", state_line(d)))
        }
        TaskAction::Delete { id } => {
            let data = client.call(Method::DELETE, &format!("/v1/task/{id}"), None).await?;
            summary(args, &data, |_| format!("deleted task {id}"))
        }
        TaskAction::Snapshot { id, tables, condition, cancel } => {
            let path = format!("/v1/task/{id}/snapshot");
            if cancel {
                let data = client.call(Method::DELETE, &path, None).await?;
                let done = data.get("cancelled").and_then(Value::as_bool).unwrap_or(false);
                return Ok(summary(args, &data, |_| {
                    if done {
                        format!("task {id}: snapshot cancelled")
                    } else {
                        format!("task {id}: no snapshot to cancel")
                    }
                }));
            }
            if !tables.is_empty() {
                let mut body = serde_json::json!({ "tables": tables });
                if let Some(c) = condition {
                    body["where"] = Value::String(c);
                }
                let data = client.call(Method::POST, &path, Some(body)).await?;
                return Ok(summary(args, &data, |d| {
                    format!("task {id}: snapshot {} requested", d.get("request").map_or("?".into(), Value::to_string))
                }));
            }
            let data = client.call(Method::GET, &path, None).await?;
            if args.json {
                return Ok(data.to_string());
            }
            let state = data.get("state").and_then(Value::as_str).unwrap_or("?");
            let tables = data.get("tables").and_then(Value::as_array).cloned().unwrap_or_default();
            format!(
                "task {id}: snapshot {state}\n{}",
                table(&["table", "done", "rows", "estimated_rows", "chunks"], &tables)
            )
        }
    };
    Ok(out)
}

/// Runs `dts worker list|drain|activate`.
pub async fn worker(action: WorkerAction) -> Result<String, CliError> {
    use reqwest::Method;
    let (WorkerAction::List { api } | WorkerAction::Drain { api, .. } | WorkerAction::Activate { api, .. }) = &action;
    let (args, client) = (api, Client::new(api)?);
    Ok(match &action {
        WorkerAction::List { .. } => {
            let data = client.call(Method::GET, "/v1/workers", None).await?;
            let workers = data.get("workers").and_then(Value::as_array).cloned().unwrap_or_default();
            if args.json {
                return Ok(Value::Array(workers).to_string());
            }
            table(&["id", "addr", "state", "tasks", "capacity", "heartbeat_age_ms", "version"], &workers)
        }
        WorkerAction::Drain { id, .. } => {
            let data = client.call(Method::POST, &format!("/v1/workers/{id}/drain"), None).await?;
            summary(args, &data, |_| format!("worker {id} is draining"))
        }
        WorkerAction::Activate { id, .. } => {
            let data = client.call(Method::POST, &format!("/v1/workers/{id}/activate"), None).await?;
            summary(args, &data, |_| format!("worker {id} is active"))
        }
    })
}

fn state_line(d: &Value) -> String {
    let get = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!("state {}, desired {}", get("state"), get("desired_state"))
}

fn summary(args: &ApiArgs, data: &Value, human: impl Fn(&Value) -> String) -> String {
    if args.json {
        data.to_string()
    } else {
        human(data)
    }
}

fn pretty(data: &Value) -> String {
    serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string())
}

/// `rows` as a table of `cols`, columns padded to their widest cell;
/// control characters in values are shown escaped so a cell stays one line.
pub fn table(cols: &[&str], rows: &[Value]) -> String {
    let cell = |row: &Value, col: &str| -> String {
        let text = match row.get(col) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
    };
    let grid: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|c| cell(r, c)).collect()).collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| grid.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(cols.iter().map(|c| c.to_uppercase()).collect())];
    out.extend(grid.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_escape() {
        let rows = vec![json!({"id": 1, "state": "Running"}), json!({"id": 200, "state": "a\nb"})];
        let t = table(&["id", "state"], &rows);
        assert_eq!(t, "ID   STATE\n1    Running\n200  a\\nb");
    }

    proptest! {
        #[test]
        fn every_row_is_one_line(values in proptest::collection::vec(".{0,20}", 0..8)) {
            let rows: Vec<Value> = values.iter().map(|v| json!({"id": v})).collect();
            let t = table(&["id"], &rows);
            prop_assert_eq!(t.matches('\n').count(), rows.len(), "a header and one line per row");
        }
    }
}
