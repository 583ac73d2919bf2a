//! Configuration layers through the real binary: every key of batchd.example.toml from the
//! environment, the order defaults < file < environment < flags, `config check` naming every
//! bad key with its line, and `config show` never printing a secret.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::process::{batchd_bin, serve};

const EXAMPLE: &str = include_str!("../../batchd.example.toml");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `batchd ARGS` with only `env` set: nothing of the test's own environment (BATCHD_TEST_PG …).
fn batchd(args: &[&str], env: &[(String, String)]) -> Run {
    let out = Command::new(batchd_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run batchd");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn show_json(args: &[&str], env: &[(String, String)]) -> Value {
    let mut all = vec!["config", "show", "--output", "json"];
    all.extend_from_slice(args);
    let run = batchd(&all, env);
    assert_eq!(run.code, 0, "config show failed: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// `BATCHD_` and the key's table path and name, upper case, joined with `_`.
fn var_of(key: &str) -> String {
    format!("BATCHD_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every leaf key of a TOML table, dotted; an array of tables is one key.
fn leaves(t: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(inner) => leaves(inner, &key, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// A duration one unit longer: "30s" → "31s", "500ms" → "501ms".
fn longer(d: &str) -> Option<String> {
    let digits: String = d.chars().take_while(char::is_ascii_digit).collect();
    let unit = &d[digits.len()..];
    let n: u64 = digits.parse().ok()?;
    ["ms", "s", "m", "h", "d", "w"].contains(&unit).then(|| format!("{}{unit}", n + 1))
}

/// A valid value for `key` that differs from the example's `value`: what the variable is set
/// to, and what `config show` must then print (`None`: a secret, printed masked).
fn other_value(key: &str, value: &toml::Value) -> (String, Option<Value>) {
    use toml::Value as T;
    let special = match key {
        "listen" => Some("127.0.0.1:8181"),
        "database" => Some("sqlite:from-env.db"),
        "path_prefix" => Some("/Cust77"),
        "base_timezone" => Some("Europe/Oslo"),
        "postgres.statement_timeout" => Some("2m"),
        "auth.trusted_proxies" => Some("10.0.0.0/8"),
        "auth.cors_origins" => Some("https://app.example"),
        _ => None,
    };
    if key == "auth.app_tokens" {
        return ("app-token-one,app-token-two".into(), None);
    }
    if let Some(s) = special {
        let shown = if value.is_array() { serde_json::json!([s]) } else { serde_json::json!(s) };
        return (s.to_owned(), Some(shown));
    }
    match value {
        T::Boolean(b) => ((!b).to_string(), Some(Value::Bool(!b))),
        T::Integer(n) => ((n + 1).to_string(), Some(serde_json::json!(n + 1))),
        T::String(s) => match longer(s) {
            Some(l) => (l.clone(), Some(Value::String(l))),
            None => panic!("no test value for {key} = {s:?}: add one to other_value"),
        },
        T::Array(items) if key == "definition" => {
            assert!(!items.is_empty());
            let text = r#"[{ name = "from-env", runner = "external", restarts = 4 }]"#;
            (text.into(), Some(serde_json::json!([{ "name": "from-env", "runner": "external", "restarts": 4 }])))
        }
        other => panic!("no test value for {key} = {other:?}: add one to other_value"),
    }
}

#[test]
fn every_key_of_the_example_can_be_set_from_the_environment() {
    let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
    let mut keys = Vec::new();
    leaves(&example, "", &mut keys);
    assert!(keys.len() > 40, "the example has its keys: {}", keys.len());
    let mut env = Vec::new();
    let mut expected = Vec::new();
    for (key, value) in &keys {
        let (text, shown) = other_value(key, value);
        env.push((var_of(key), text));
        expected.push((key, shown));
    }
    let shown = show_json(&[], &env);
    for (key, want) in expected {
        let entry = &shown[key.as_str()];
        assert_eq!(entry["source"], format!("env {}", var_of(key)), "{key}: {entry}");
        match want {
            Some(v) => assert_eq!(entry["value"], v, "{key} from {}", var_of(key)),
            None => assert!(entry["value"].to_string().contains("***"), "{key} is a secret: {entry}"),
        }
    }
    // And without them every key is back to its default.
    let plain = show_json(&[], &[]);
    for (key, _) in &keys {
        assert_eq!(plain[key.as_str()]["source"], "default", "{key}");
    }
}

#[test]
fn defaults_then_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batchd.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1001\"\n\n[http]\nmax_connections = 11\nkeep_alive_timeout = \"3s\"\n")
        .unwrap();
    let file = file.to_str().unwrap();
    let env = pairs(&[
        ("BATCHD_LISTEN", "127.0.0.1:1002"),
        ("BATCHD_HTTP_MAX_CONNECTIONS", "12"),
        ("BATCHD_DATABASE", "sqlite:env.db"),
        ("BATCHD_LOG_FORMAT", "json"),
    ]);
    let at = |v: &Value, key: &str| (v[key]["value"].clone(), v[key]["source"].as_str().unwrap_or("").to_owned());

    let d = show_json(&[], &[]);
    assert_eq!(at(&d, "listen"), (Value::from("127.0.0.1:8080"), "default".into()));

    let f = show_json(&["--config", file], &[]);
    assert_eq!(at(&f, "listen"), (Value::from("127.0.0.1:1001"), format!("file {file}:1")));
    assert_eq!(at(&f, "http.max_connections"), (Value::from(11), format!("file {file}:4")));

    let e = show_json(&["--config", file], &env);
    assert_eq!(at(&e, "listen"), (Value::from("127.0.0.1:1002"), "env BATCHD_LISTEN".into()));
    assert_eq!(at(&e, "http.max_connections"), (Value::from(12), "env BATCHD_HTTP_MAX_CONNECTIONS".into()));
    assert_eq!(at(&e, "http.keep_alive_timeout"), (Value::from("3s"), format!("file {file}:5")), "untouched keys stay");
    assert_eq!(at(&e, "log_format"), (Value::from("json"), "env BATCHD_LOG_FORMAT".into()));

    let flags =
        ["--config", file, "--listen", "127.0.0.1:1003", "--database", "sqlite:flag.db", "--log-format", "pretty"];
    let g = show_json(&flags, &env);
    assert_eq!(at(&g, "listen"), (Value::from("127.0.0.1:1003"), "flag --listen".into()));
    assert_eq!(at(&g, "database"), (Value::from("sqlite:flag.db"), "flag --database".into()));
    assert_eq!(at(&g, "log_format"), (Value::from("pretty"), "flag --log-format".into()));
    assert_eq!(at(&g, "http.max_connections"), (Value::from(12), "env BATCHD_HTTP_MAX_CONNECTIONS".into()));

    // BATCHD_CONFIG still names the file.
    let mut with_config = env.clone();
    with_config.push(("BATCHD_CONFIG".into(), file.into()));
    assert_eq!(at(&show_json(&[], &with_config), "http.keep_alive_timeout").1, format!("file {file}:5"));

    // A bad variable is named, and stops the command.
    let bad = batchd(&["config", "show"], &pairs(&[("BATCHD_HTTP_MAX_CONNECTIONS", "lots")]));
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("BATCHD_HTTP_MAX_CONNECTIONS"), "{}", bad.stderr);
    // So is one the rules refuse, and a flag.
    let bad = batchd(&["config", "show"], &pairs(&[("BATCHD_POSTGRES_POOL_SIZE", "0")]));
    assert!(bad.code != 0 && bad.stderr.contains("(from env BATCHD_POSTGRES_POOL_SIZE)"), "{}", bad.stderr);
    let bad = batchd(&["config", "show", "--listen", "nowhere"], &[]);
    assert!(bad.code != 0 && bad.stderr.contains("(from flag --listen)"), "{}", bad.stderr);
}

/// The environment reaches the running server, not only `config show`.
#[tokio::test]
async fn the_server_runs_with_what_the_environment_sets() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        &dir.path().join("env.db"),
        &[("BATCHD_PATH_PREFIX", "/Cust4711"), ("BATCHD_STRICT_DEFINITIONS", "true")],
    );
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{}/Cust4711/api/v1/BatchTask", server.base))
        .basic_auth("admin", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the prefix from BATCHD_PATH_PREFIX is served");
    let res = client
        .post(format!("{}/api/v1/BatchTask", server.base))
        .basic_auth("admin", Some("pw"))
        .json(&serde_json::json!({ "Name": "no-such-definition" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "strict_definitions from BATCHD_STRICT_DEFINITIONS");
}

#[test]
fn config_check_names_every_bad_key_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:8080\"\n\
         [http]\n\
         max_conections = 100\n\
         keep_alive_timeout = \"30s\"\n\
         [runner]\n\
         enabled = \"yes\"\n\
         [postgres]\n\
         pool_size = 0\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let run = batchd(&["config", "check", file], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with(&format!("{file}:3: http.max_conections: unknown key")), "{}", lines[0]);
    assert!(lines[0].contains("did you mean \"max_connections\""), "{}", lines[0]);
    assert!(lines[1].starts_with(&format!("{file}:6: runner.enabled: expected true or false")), "{}", lines[1]);
    assert!(lines[2].starts_with(&format!("{file}:8: postgres.pool_size:")), "{}", lines[2]);
    assert!(lines[2].contains("between 1 and 1000"), "{}", lines[2]);

    let json = batchd(&["config", "check", "--output", "json", file], &[]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    let found: Vec<(u64, &str)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["key"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [(3, "http.max_conections"), (6, "runner.enabled"), (8, "postgres.pool_size")]);

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("batchd.example.toml");
    let good = batchd(&["config", "check", example.to_str().unwrap()], &[]);
    assert_eq!((good.code, good.stdout.as_str()), (0, ""), "{}", good.stderr);
    let missing = batchd(&["config", "check", dir.path().join("none.toml").to_str().unwrap()], &[]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
}

#[test]
fn config_show_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.toml");
    std::fs::write(
        &path,
        r#"
database = "postgres://batchd:file-db-pw-1@db.example/batchd?sslmode=require"
[auth]
app_tokens = ["file-app-token-2"]
[[definition]]
name = "hook"
runner = "http"
url = "https://hookuser:url-pw-3@hooks.example/x?api_key=query-key-4&day=1"
headers = { Authorization = "Bearer header-token-5", "X-Custom" = "Basic basic-6", Accept = "application/json" }
[[definition]]
name = "job"
runner = "command"
command = ["/bin/true"]
env = { SERVICE_PASSWORD = "env-pw-7", MODE = "fast" }
"#,
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let env = pairs(&[("BATCHD_ADMIN_PASSWORD", "admin-pw-8"), ("BATCHD_AUTH_APP_TOKENS", "env-app-token-9")]);
    let secrets = [
        "file-db-pw-1",
        "file-app-token-2",
        "url-pw-3",
        "query-key-4",
        "header-token-5",
        "basic-6",
        "env-pw-7",
        "admin-pw-8",
        "env-app-token-9",
    ];
    for output in ["text", "json"] {
        let run = batchd(&["config", "show", "--config", file, "--output", output], &env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        for s in secrets {
            assert!(!run.stdout.contains(s) && !run.stderr.contains(s), "{output} shows {s}:\n{}", run.stdout);
        }
        for kept in ["db.example/batchd", "hooks.example/x", "day=1", "application/json", "fast", "***"] {
            assert!(run.stdout.contains(kept), "{output} lost {kept}:\n{}", run.stdout);
        }
    }
    // Nor does an error about a secret key quote its value.
    std::fs::write(&path, "admin_password = 31415926\n").unwrap();
    let run = batchd(&["config", "show", "--config", file], &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("admin_password") && !run.stderr.contains("31415926"), "{}", run.stderr);
    let run = batchd(&["config", "check", file], &[]);
    assert!(run.stdout.contains("admin_password") && !run.stdout.contains("31415926"), "{}", run.stdout);
}
