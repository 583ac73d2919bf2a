//! `batchd task …` and `batchd definition …`: the real binary's CLI against a live server, for
//! every command and every exit code, and never a secret in what it prints.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{Proc, batchd_bin, serve};

const ADMIN_SECRET: &str = "admin-secret-4711";
const BOB_SECRET: &str = "bob-secret-0815";
const WRONG_SECRET: &str = "wrong-secret-9999";

/// Fast runner loops; one definition that fails with a Result, one that ends
/// SucceededManualCleanup, and one whose command line must never be shown.
const CONFIG: &str = r#"
[runner]
poll = "100ms"
stop_poll = "100ms"

[[definition]]
name = "breaks"
runner = "command"
command = ["/bin/sh", "-c", "echo 'progress: 50 half way'; echo 'result: it broke'; exit 3"]

[[definition]]
name = "tidy"
runner = "command"
command = ["/bin/sh", "-c", "echo 'result: left a mess'; echo 'state: SucceededManualCleanup'"]

[[definition]]
name = "private"
description = "keeps its command to itself"
runner = "command"
command = ["/bin/sh", "-c", "echo command-line-secret"]
"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

struct Env {
    server: Proc,
    db: String,
    home: tempfile::TempDir,
    /// Everything the task CLI printed, to look for secrets at the end.
    printed: std::cell::RefCell<String>,
}

impl Env {
    fn start() -> Env {
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("batchd.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let db = home.path().join("cli.db");
        let server =
            serve(&db, &[("BATCHD_CONFIG", config.to_str().unwrap()), ("BATCHD_ADMIN_PASSWORD", ADMIN_SECRET)]);
        Env { server, db: format!("sqlite:{}", db.display()), home, printed: Default::default() }
    }

    /// `batchd ARGS` as the admin, against the server.
    fn admin(&self, args: &[&str]) -> Run {
        self.run(args, &[("BATCHD_USER", "admin"), ("BATCHD_PASSWORD", ADMIN_SECRET)])
    }

    /// `batchd ARGS` with only `env` (and the server's URL) from outside: no profile, no
    /// credentials of the machine's.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(batchd_bin());
        cmd.args(args)
            .env_remove("BATCHD_USER")
            .env_remove("BATCHD_PASSWORD")
            .env_remove("BATCHD_TOKEN")
            .env_remove("BATCHD_PROFILE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COLUMNS")
            .env("HOME", self.home.path())
            .env("BATCHD_SERVER", &self.server.base)
            .env("BATCHD_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let r = run_with_deadline(cmd, None);
        self.printed.borrow_mut().push_str(&format!("{}\n{}\n", r.stdout, r.stderr));
        r
    }

    /// An associate added through the admin CLI beside the running server.
    fn add_associate(&self, name: &str, password: &str) {
        let mut cmd = Command::new(batchd_bin());
        cmd.args(["associate", "add", name, "--database", &self.db]).env_remove("BATCHD_CONFIG");
        let r = run_with_deadline(cmd, Some(format!("{password}\n").as_bytes()));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }

    fn token(&self, associate: &str, scope: &str) -> String {
        let mut cmd = Command::new(batchd_bin());
        cmd.args(["token", "create", "--associate", associate, "--scope", scope, "--database", &self.db])
            .env_remove("BATCHD_CONFIG");
        let r = run_with_deadline(cmd, None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_owned()
    }
}

/// Runs `cmd` to its end (killed after 60 s), feeding it `stdin`.
fn run_with_deadline(mut cmd: Command, stdin: Option<&[u8]>) -> Run {
    let mut child = cmd
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn batchd");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).unwrap();
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("batchd {cmd:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// An error is one line on stderr, nothing on stdout.
fn one_line_error(r: &Run, code: i32, says: &str) {
    assert_eq!(r.code, code, "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains(says), "{:?} does not say {says:?}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

fn start(env: &Env, args: &[&str]) -> u32 {
    let mut all = vec!["task", "start"];
    all.extend_from_slice(args);
    let r = env.admin(&all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The id alone, for `id=$(batchd task start …)`.
    assert!(r.stdout.ends_with('\n') && r.stdout.trim_end().bytes().all(|b| b.is_ascii_digit()), "{:?}", r.stdout);
    r.stdout.trim().parse().unwrap()
}

fn wait_for_state(env: &Env, id: u32, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = env.admin(&["task", "get", &id.to_string(), "--output", "json"]).json();
        if t["State"] == state {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} never became {state}: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn task_commands_print_what_the_api_answers_and_exit_by_the_outcome() {
    let env = Env::start();

    // definition list: the server's definitions, never a command line.
    let r = env.admin(&["definition", "list", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let defs = r.json();
    let names: Vec<&str> = defs.as_array().unwrap().iter().map(|d| d["Name"].as_str().unwrap()).collect();
    for n in ["Noop", "Sleep", "breaks", "tidy", "private"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let private = defs.as_array().unwrap().iter().find(|d| d["Name"] == "private").unwrap();
    assert_eq!(private["Runner"], "command");
    assert_eq!(private["Description"], "keeps its command to itself");
    let r = env.admin(&["definition", "list"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("NAME") && r.stdout.contains("private") && r.stdout.contains("sleep"), "{}", r.stdout);
    assert!(!env.printed.borrow().contains("command-line-secret"), "a definition's command is not shown");

    // start: the id alone; get shows what was sent.
    let id = start(&env, &["Sleep", "-p", "Seconds=0", "--description", "a nap & more", "-p", "Note=x=y"]);
    let t = wait_for_state(&env, id, "Succeeded");
    assert_eq!(t["Id"], id);
    assert_eq!(t["Name"], "Sleep");
    assert_eq!(t["Description"], "a nap & more");
    assert_eq!(t["ParameterObject"]["Seconds"], "0");
    assert_eq!(t["ParameterObject"]["Note"], "x=y", "only the first = splits");
    let r = env.admin(&["task", "get", &id.to_string()]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Sleep") && r.stdout.contains("Succeeded") && r.stdout.contains("a nap & more"));

    // --watch of a Sleep task: plain progress lines on stderr (not a terminal), the Result on
    // stdout, exit 0.
    let r = env.admin(&["task", "start", "Sleep", "-p", "Seconds=1.5", "--watch", "--interval", "200ms"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "slept 1.5 s\n");
    assert!(r.stderr.contains("Started") && r.stderr.contains("Succeeded"), "{}", r.stderr);
    assert!(!r.stderr.contains('\x1b'), "no escape codes off a terminal: {:?}", r.stderr);
    let r = env.admin(&["task", "start", "Noop", "--watch", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let noop = r.json();
    assert_eq!(noop["State"], "Succeeded");

    // A failing command: exit 1, its Result on stdout.
    let r = env.admin(&["task", "start", "breaks", "--watch", "--interval", "100ms"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "it broke\n");
    assert!(r.stderr.contains("Failed"), "{}", r.stderr);
    let failed_id: u32 =
        r.stderr.lines().find_map(|l| l.strip_prefix("started task ")).unwrap().trim().parse().unwrap();
    // watch of a task that has ended already answers at once, by its outcome.
    let r = env.admin(&["task", "watch", &failed_id.to_string()]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "it broke\n");
    let tidy = start(&env, &["tidy"]);
    let r = env.admin(&["task", "watch", &tidy.to_string(), "--interval", "100ms"]);
    assert_eq!(r.code, 0, "SucceededManualCleanup is a success: {}", r.stderr);
    assert_eq!(r.stdout, "left a mess\n");

    // list: the OData list as it comes, filtered and limited on the server.
    let r = env.admin(&["task", "list", "--output", "json", "--name", "Sleep", "--state", "succeeded", "--limit", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = r.json();
    let rows = list["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["DefinitionName"], "Sleep");
    assert_eq!(rows[0]["State"], 4);
    assert!(!list["odata.nextLink"].is_null(), "there are two Succeeded Sleep tasks");
    let r = env.admin(&["task", "list", "--output", "json", "--state", "Failed"]);
    let failed: Vec<i64> =
        r.json()["value"].as_array().unwrap().iter().map(|t| t["batchTaskId"].as_i64().unwrap()).collect();
    assert_eq!(failed, vec![i64::from(failed_id)]);
    let r = env.admin(&["task", "list"]);
    assert_eq!(r.code, 0);
    let header = r.stdout.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATE") && header.contains("DESCRIPTION"), "{header}");
    assert!(r.stdout.contains("breaks") && r.stdout.contains("Failed"), "{}", r.stdout);
    // Newest first.
    let first_id: u32 = r.stdout.lines().nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(first_id, tidy);
    // Names reach the filter escaped: quotes, ampersands and spaces are data, not syntax.
    let r = env.admin(&["task", "list", "-o", "json", "--name", "it's a & b = c"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["value"].as_array().unwrap().len(), 0);
    // --owner by id, by name, as `me`.
    for owner in ["1", "admin", "me"] {
        let r = env.admin(&["task", "list", "-o", "json", "--owner", owner, "--limit", "1000"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["value"].as_array().unwrap().len(), 5, "--owner {owner}");
    }
    let r = env.admin(&["task", "list", "--owner", "nobody-of-that-name"]);
    one_line_error(&r, 4, "nobody-of-that-name");

    // events
    let r = env.admin(&["task", "events", &failed_id.to_string(), "--output", "json"]);
    assert_eq!(r.code, 0);
    let events = r.json();
    let to: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["To"].as_str()).collect();
    assert_eq!(to.first(), Some(&"New"));
    assert_eq!(to.last(), Some(&"Failed"));
    let r = env.admin(&["task", "events", &failed_id.to_string()]);
    assert!(r.stdout.starts_with("TIME") && r.stdout.contains("created"), "{}", r.stdout);

    // stop: a running task ends Failed; stopping it again takes no effect (exit 6).
    let long = start(&env, &["Sleep", "-p", "Seconds=60"]);
    wait_for_state(&env, long, "Started");
    let r = env.admin(&["task", "stop", &long.to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("stop"), "{}", r.stdout);
    wait_for_state(&env, long, "Failed");
    let r = env.admin(&["task", "stop", &long.to_string(), "--output", "json"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "false", "the API's answer as it comes");
    assert!(r.stderr.contains("not stopped"), "{}", r.stderr);

    // rm, then it is gone: 4 from every command that names it.
    let r = env.admin(&["task", "rm", &long.to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for cmd in ["get", "rm", "watch", "stop"] {
        let r = env.admin(&["task", cmd, &long.to_string()]);
        one_line_error(&r, 4, "not found");
    }
    // Admins still read a deleted task's log; nobody reads one of a task that never was.
    let r = env.admin(&["task", "events", &long.to_string()]);
    assert!(r.code == 0 && r.stdout.contains("deleted by admin"), "{}", r.stdout);
    one_line_error(&env.admin(&["task", "events", "999999"]), 4, "not found");
    one_line_error(&env.admin(&["task", "get", "4000000000"]), 4, "not found");
    // Deleting a running task is refused by the server (exit 6), in its own words.
    let running = start(&env, &["Sleep", "-p", "Seconds=60"]);
    wait_for_state(&env, running, "Started");
    let r = env.admin(&["task", "rm", &running.to_string()]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: the server answered 4"), "{}", r.stderr);
    env.admin(&["task", "stop", &running.to_string()]);

    assert!(!env.printed.borrow().contains(ADMIN_SECRET), "the password was printed");
}

#[test]
fn usage_errors_exit_2_and_help_documents_the_exit_codes() {
    let env = Env::start();
    for args in [
        &["task", "get", "abc"][..],
        &["task", "get"],
        &["task", "start"],
        &["task", "start", "Noop", "-p", "no-equals-sign"],
        &["task", "start", "Noop", "-p", "=value"],
        &["task", "start", "Noop", "-p", "a=1", "-p", "a=2"],
        &["task", "list", "--state", "Sleeping"],
        &["task", "list", "--limit", "0"],
        &["task", "list", "--limit", "1001"],
        &["task", "list", "--output", "yaml"],
        &["task", "watch", "1", "--interval", "1ms"],
        &["task", "frobnicate"],
        &["task", "list", "--server", "ftp://example.invalid"],
        &["task", "list", "--server", "not a url"],
    ] {
        let r = env.admin(args);
        assert_eq!(r.code, 2, "{args:?}: {} {}", r.stdout, r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // A URL holding credentials is refused without repeating them.
    let r = env.admin(&["task", "list", "--server", "http://admin:url-secret-1@127.0.0.1:1/"]);
    one_line_error(&r, 2, "credentials");
    assert!(!r.stderr.contains("url-secret-1"));
    // Half a Basic pair is a mistake, not an anonymous request.
    let r = env.run(&["task", "list"], &[("BATCHD_USER", "admin")]);
    one_line_error(&r, 2, "BATCHD_PASSWORD");

    for args in [&["task", "--help"][..], &["--help"], &["definition", "--help"]] {
        let r = env.run(args, &[]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("Exit codes") && r.stdout.contains("5  forbidden"), "{args:?}: {}", r.stdout);
    }
    let r = env.run(&["completions", "bash"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("batchd") && r.stdout.contains("watch"), "{}", r.stdout);
    let r = env.run(&["man"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with(".ie") || r.stdout.contains(".TH"), "{}", &r.stdout[..r.stdout.len().min(200)]);
}

#[test]
fn credentials_come_from_the_environment_or_a_private_profile_and_refusals_exit_3_or_5() {
    let env = Env::start();
    let id = start(&env, &["Noop"]);

    // Unreachable server: 3, one line, saying so.
    let r = env.admin(&["task", "list", "--server", "http://127.0.0.1:1"]);
    one_line_error(&r, 3, "cannot reach the server at http://127.0.0.1:1");
    let r = env.admin(&["task", "watch", "1", "--server", "http://127.0.0.1:1"]);
    one_line_error(&r, 3, "cannot reach");

    // Wrong password, no credentials, a bad token: 3.
    let r = env.run(&["task", "get", &id.to_string()], &[("BATCHD_USER", "admin"), ("BATCHD_PASSWORD", WRONG_SECRET)]);
    one_line_error(&r, 3, "refused the credentials of user \"admin\"");
    let r = env.run(&["task", "list"], &[]);
    one_line_error(&r, 3, "needs credentials");
    let r = env.run(&["task", "list"], &[("BATCHD_TOKEN", "not-a-real-token-secret")]);
    one_line_error(&r, 3, "refused the credentials of the API token");

    // A token works, and wins over a user and password.
    let token = env.token("admin", "admin");
    let r = env.run(
        &["task", "get", &id.to_string(), "-o", "json"],
        &[("BATCHD_TOKEN", &token), ("BATCHD_USER", "admin"), ("BATCHD_PASSWORD", WRONG_SECRET)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["Id"], id);

    // Forbidden (authenticated, not allowed): 5. A read-scoped token may not start a task; a
    // user may not look up other associates by name.
    let read = env.token("admin", "read");
    let r = env.run(&["task", "start", "Noop"], &[("BATCHD_TOKEN", &read)]);
    one_line_error(&r, 5, "forbidden");
    env.add_associate("bob", BOB_SECRET);
    let bob = [("BATCHD_USER", "bob"), ("BATCHD_PASSWORD", BOB_SECRET)];
    let r = env.run(&["task", "list", "--owner", "admin"], &bob);
    one_line_error(&r, 5, "only admins may look up names");
    // Someone else's task is not found, as the API has it.
    let r = env.run(&["task", "get", &id.to_string()], &bob);
    one_line_error(&r, 4, "not found");
    let r = env.run(&["task", "list", "-o", "json"], &bob);
    assert_eq!(r.json()["value"].as_array().unwrap().len(), 0, "bob sees only his own tasks");

    // The profile: server and credentials from a file, refused while others may read it.
    let profile = env.home.path().join(".config/batchd/profile.toml");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(
        &profile,
        format!("server = \"{}\"\nuser = \"admin\"\npassword = \"{ADMIN_SECRET}\"\n", env.server.base),
    )
    .unwrap();
    set_mode(&profile, 0o644);
    let no_server = [("BATCHD_SERVER", "")];
    let r = env.run(&["task", "get", &id.to_string()], &no_server);
    one_line_error(&r, 2, "chmod 600");
    set_mode(&profile, 0o600);
    let r = env.run(&["task", "get", &id.to_string(), "-o", "json"], &no_server);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["Id"], id);
    // BATCHD_PROFILE names another file, which must then exist.
    let other = env.home.path().join("other.toml");
    std::fs::write(&other, format!("server = \"{}\"\ntoken = \"{token}\"\n", env.server.base)).unwrap();
    set_mode(&other, 0o600);
    let r = env.run(&["definition", "list", "-o", "json"], &[("BATCHD_PROFILE", other.to_str().unwrap())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.run(&["task", "list"], &[("BATCHD_PROFILE", "/nonexistent/profile.toml")]);
    one_line_error(&r, 2, "/nonexistent/profile.toml");
    // The environment comes before the profile.
    let r = env.run(&["task", "list"], &[("BATCHD_USER", "admin"), ("BATCHD_PASSWORD", WRONG_SECRET)]);
    assert_eq!(r.code, 3);

    let printed = env.printed.borrow();
    for secret in [ADMIN_SECRET, BOB_SECRET, WRONG_SECRET, &token, &read, "not-a-real-token-secret"] {
        assert!(!printed.contains(secret), "{secret} was printed:\n{printed}");
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn scheduling_commands_pause_resume_retry_and_act_in_bulk() {
    let env = Env::start();
    let r = env.admin(&["definition", "pause", "breaks"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "breaks: paused\n"), "{}", r.stderr);
    let r = env.admin(&["definition", "pause", "breaks"]);
    assert_eq!(r.stdout, "breaks: paused already\n");
    let r = env.admin(&["definition", "list"]);
    let line = r.stdout.lines().find(|l| l.starts_with("breaks")).unwrap();
    assert!(line.contains("paused"), "{}", r.stdout);
    one_line_error(&env.admin(&["definition", "pause", "no such definition"]), 4, "no such definition");
    env.add_associate("bob", BOB_SECRET);
    let bob = [("BATCHD_USER", "bob"), ("BATCHD_PASSWORD", BOB_SECRET)];
    one_line_error(&env.run(&["definition", "resume", "breaks"], &bob), 5, "only admins may pause");

    // Paused: a new task waits; resumed, it runs (and fails, as `breaks` does).
    let id = start(&env, &["breaks"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.admin(&["task", "get", &id.to_string(), "-o", "json"]).json()["State"], "New");
    let r = env.admin(&["definition", "resume", "breaks"]);
    assert_eq!(r.stdout, "breaks: resumed\n", "{}", r.stderr);
    wait_for_state(&env, id, "Failed");

    // retry: the task as the server answers it; a task that is not Failed is refused (exit 6).
    let r = env.admin(&["task", "retry", &id.to_string(), "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["State"], "New");
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = loop {
        let t = env.admin(&["task", "get", &id.to_string(), "-o", "json"]).json();
        if t["State"] == "Failed" && t["StartCount"] == 2 {
            break t;
        }
        assert!(Instant::now() < deadline, "the retried task did not run again: {t}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(t["Result"], "it broke");
    let ok = start(&env, &["Noop"]);
    wait_for_state(&env, ok, "Succeeded");
    let r = env.admin(&["task", "retry", &ok.to_string()]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("only a Failed task"), "{}", r.stderr);

    // bulk: a dry run counts, the action says what it did; a filter is required.
    let r = env.admin(&["task", "bulk", "retry", "--name", "breaks", "--state", "failed", "--dry-run"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "1 tasks match\n"), "{}", r.stderr);
    let r = env.admin(&["task", "bulk", "delete", "--filter", "DefinitionName eq 'breaks'", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), serde_json::json!({"Matched": 1, "Done": 1}));
    one_line_error(&env.admin(&["task", "get", &id.to_string()]), 4, "not found");
    let r = env.admin(&["task", "bulk", "stop"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `task watch` follows the server's event stream: with a 30 s polling interval, a task that
/// runs a second is seen to its end within seconds, which asking every 30 s could not do.
#[test]
fn watch_follows_the_event_stream_rather_than_polling() {
    let env = Env::start();
    let began = Instant::now();
    let r = env.admin(&["task", "start", "Sleep", "-p", "Seconds=1", "--watch", "--interval", "30s"]);
    let took = began.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "slept 1 s\n");
    assert!(r.stderr.contains("Succeeded"), "{}", r.stderr);
    assert!(took < Duration::from_secs(15), "the watch took {took:?}: it polled instead of streaming");
    // A task watched from before its start: the stream brings each state.
    let id = start(&env, &["Sleep", "-p", "Seconds=1"]);
    let r = env.admin(&["task", "watch", &id.to_string(), "--interval", "30s"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("task {id} Succeeded")), "{}", r.stderr);
}

#[test]
fn task_start_after_waits_and_task_deps_shows_both_ways() {
    let env = Env::start();
    let first = start(&env, &["Sleep", "-p", "Seconds=0.3"]);
    let id = first.to_string();
    let second = start(&env, &["Noop", "--after", &id, "--after", &id]);
    let t = wait_for_state(&env, second, "Succeeded");
    let done = wait_for_state(&env, first, "Succeeded");
    assert!(t["LastStarted"].as_str() >= done["LastStarted"].as_str(), "{t} {done}");
    let r = env.admin(&["task", "deps", &second.to_string(), "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["After"], json!([{"Id": first, "Name": "Sleep", "State": "Succeeded", "Satisfied": true}]));
    let r = env.admin(&["task", "deps", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = r.stdout.lines().find(|l| l.starts_with("before")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains(&second.to_string()) && row.contains("Noop") && row.contains("Succeeded"), "{row}");
    let r = env.admin(&["task", "start", "Noop", "--after", "99999"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("After has an unknown value '99999'"), "{}", r.stderr);
}
