//! The `command` runner: a program with arguments, in its own process group.
//!
//! Protocol (stdout, one instruction per line):
//! - `progress: <percent> [text]` sets ProgressPercent (0–100) and ProgressDescription;
//! - `file: <path>` sets FileName;
//! - `result: <text>` sets Result (default: `exit status N`);
//! - `state: SucceededManualCleanup` makes a successful run end in that state;
//! - any other line is output: the last one becomes Response.
//!
//! A line longer than 64 KiB is cut (the rest is read and dropped) and marked `… [truncated N
//! bytes]`. Exit status 0 = success. Stderr is kept (last 4 KiB) for the event log. Stop and timeout send
//! SIGTERM to the process group, then SIGKILL after the grace period. The process gets SIGKILL
//! if the server dies (PR_SET_PDEATHSIG), so a killed server leaves no run behind.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::domain::Task;
use crate::domain::definition::CommandSpec;
use crate::domain::task::limits;
use crate::store::runner::Progress;

use super::StopCause;
use super::exec::{Completed, Ctx, Ended, RunEnd};
use super::output::{self, Rest, clip, cut};

/// Stderr kept for the event log: its last bytes (read in pieces, at most twice this held).
const STDERR_TAIL: usize = 4096;
/// The longest stdout line kept; the rest of a longer one is dropped unread into memory.
/// Nothing a line can set holds more (`Response`, `Result`: 64 Ki characters).
const MAX_LINE_BYTES: usize = limits::LONG_TEXT;
/// Stdout is read in pieces this big.
const READ_BUFFER: usize = 64 * 1024;

/// A stdout line, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Progress { percent: i16, text: Option<String> },
    File(String),
    Result(String),
    ManualCleanup,
    Output(String),
}

pub fn parse_line(line: &str) -> Line {
    let line = line.trim_end_matches(['\r', '\n']);
    let (word, rest) = match line.split_once(':') {
        Some((w, r)) => (w.trim(), r.trim()),
        None => return Line::Output(line.to_owned()),
    };
    match word.to_ascii_lowercase().as_str() {
        "progress" => {
            let (num, text) = match rest.split_once(char::is_whitespace) {
                Some((n, t)) => (n, Some(t.trim().to_owned()).filter(|t| !t.is_empty())),
                None => (rest, None),
            };
            match num.trim_end_matches('%').parse::<f64>() {
                Ok(p) if p.is_finite() => Line::Progress { percent: p.clamp(0.0, 100.0).round() as i16, text },
                _ => Line::Output(line.to_owned()),
            }
        }
        "file" if !rest.is_empty() => Line::File(rest.to_owned()),
        "result" => Line::Result(rest.to_owned()),
        "state" if rest.eq_ignore_ascii_case("SucceededManualCleanup") => Line::ManualCleanup,
        _ => Line::Output(line.to_owned()),
    }
}

/// `Report Date` → `REPORT_DATE`: environment names are portable as `[A-Z0-9_]`.
pub fn env_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

#[derive(Default)]
struct Output {
    last: Option<String>,
    file: Option<String>,
    result: Option<String>,
    manual_cleanup: bool,
}

fn signal_group(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // The group id is the leader's pid (process_group(0)). ESRCH (all gone) is fine.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Variables of the server's environment every program gets, when the server has them: where
/// programs are, the home directory, the locale (LANG, LANGUAGE and glibc's LC_ categories), the
/// time zone and the temporary directory. None of them holds a secret.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_ADDRESS",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NAME",
    "LC_NUMERIC",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LC_TIME",
    "TZ",
    "TMPDIR",
];

/// A program's whole environment, later entries winning: [`PASSED_ENV`] and the definition's
/// `inherit_env` from the server's (`server`), the definition's `env`, then batchd's own
/// `BATCHD_TASK_ID`, `BATCHD_TASK_NAME`, `BATCHD_ATTEMPT` and `BATCHD_PARAM_<KEY>`. Nothing
/// else of the server's environment (its credentials, say) reaches a task.
pub fn environment(
    server: impl Fn(&str) -> Option<OsString>,
    spec: &CommandSpec,
    task: &Task,
    attempt: i32,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = PASSED_ENV
        .iter()
        .copied()
        .chain(spec.inherit_env.iter().map(String::as_str))
        .filter_map(|name| server(name).map(|v| (OsString::from(name), v)))
        .collect();
    env.extend(spec.env.iter().map(|(k, v)| (k.into(), v.into())));
    env.push(("BATCHD_TASK_ID".into(), task.id.to_string().into()));
    env.push(("BATCHD_TASK_NAME".into(), task.name.clone().into()));
    env.push(("BATCHD_ATTEMPT".into(), attempt.to_string().into()));
    for (k, v) in task.parameters.iter().flat_map(|p| p.0.iter()) {
        env.push((format!("BATCHD_PARAM_{}", env_key(k)).into(), v.into()));
    }
    env
}

/// Set when batchd turned transparent huge pages off for its own heap at start (src/main.rs), so
/// that the programs it runs get them back.
pub static THP_OFF_FOR_BATCHD_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub async fn run(ctx: &mut Ctx, spec: &CommandSpec) -> RunEnd {
    let task = &ctx.task;
    let program = spec.program.as_str();
    let mut cmd = Command::new(program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(environment(|name| std::env::var_os(name), spec, task, ctx.attempt))
        .stdin(if task.request.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        let thp_back = THP_OFF_FOR_BATCHD_ONLY.load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if thp_back {
                    // Inherited across exec: the program gets the huge pages it had without batchd.
                    libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() as u32 != parent {
                    libc::_exit(1); // the server died before the prctl took hold
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return RunEnd::Completed(Completed::failed(format!("cannot start {program}: {e}"))),
    };
    let pid = child.id().unwrap_or(0);
    if let (Some(mut stdin), Some(request)) = (child.stdin.take(), task.request.clone()) {
        // The program may not read it; never let that block the run.
        tokio::spawn(async move {
            let _ = stdin.write_all(request.as_bytes()).await;
        });
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let runner = ctx.runner.clone();
    let id = task.id;
    let out_reader = tokio::spawn(async move {
        let mut out = Output::default();
        let Some(stdout) = stdout else { return out };
        let mut reader = BufReader::with_capacity(READ_BUFFER, stdout);
        let mut bytes = Vec::new();
        while let Ok(Some(dropped)) = output::read_line(&mut reader, &mut bytes, MAX_LINE_BYTES).await {
            let rest = if dropped > 0 { Rest::Bytes(dropped) } else { Rest::None };
            let line = String::from_utf8_lossy(&bytes);
            match parse_line(&line) {
                Line::Progress { percent, text } => {
                    runner.report_progress(id, Progress { percent: Some(percent), description: text, file_name: None });
                }
                Line::File(f) => out.file = Some(cut(&f, limits::FILE_NAME)),
                Line::Result(r) => out.result = Some(clip(r.as_bytes(), rest, limits::LONG_TEXT)),
                Line::ManualCleanup => out.manual_cleanup = true,
                Line::Output(o) if !o.trim().is_empty() => out.last = Some(clip(o.as_bytes(), rest, limits::LONG_TEXT)),
                Line::Output(_) => {}
            }
        }
        out
    });
    let err_reader = tokio::spawn(async move {
        let mut tail: Vec<u8> = Vec::new();
        let Some(mut stderr) = stderr else { return String::new() };
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > STDERR_TAIL * 2 {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
            // Start at a character, not inside one.
            let start = tail.iter().take(3).take_while(|&&b| b & 0xC0 == 0x80).count();
            tail.drain(..start);
        }
        String::from_utf8_lossy(&tail).trim().to_owned()
    });

    let mut stopped = None;
    let status = tokio::select! {
        s = child.wait() => s,
        cause = ctx.stopped() => {
            let grace = if cause == StopCause::Shutdown { Duration::ZERO } else { ctx.grace };
            stopped = Some(cause);
            signal_group(pid, libc::SIGTERM);
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever the program left behind in its group goes too, so its pipes close.
    signal_group(pid, libc::SIGKILL);
    let out =
        tokio::time::timeout(Duration::from_secs(2), out_reader).await.ok().and_then(Result::ok).unwrap_or_default();
    let stderr_tail =
        tokio::time::timeout(Duration::from_secs(2), err_reader).await.ok().and_then(Result::ok).unwrap_or_default();
    if let Some(cause) = stopped {
        return RunEnd::Stopped(cause);
    }
    let (state, exit_text) = match status {
        Ok(s) if s.success() => {
            (if out.manual_cleanup { Ended::SucceededManualCleanup } else { Ended::Succeeded }, "exit status 0".into())
        }
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let text = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "ended abnormally".into(),
            };
            (Ended::Failed, text)
        }
        Err(e) => (Ended::Failed, format!("waiting for the program failed: {e}")),
    };
    RunEnd::Completed(Completed {
        state,
        result: out.result.unwrap_or(exit_text),
        response: out.last,
        file_name: out.file,
        detail: (!stderr_tail.is_empty()).then(|| format!("stderr: {stderr_tail}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_protocol() {
        assert_eq!(
            parse_line("progress: 42 loading rows"),
            Line::Progress { percent: 42, text: Some("loading rows".into()) }
        );
        assert_eq!(parse_line("progress: 150%"), Line::Progress { percent: 100, text: None });
        assert_eq!(parse_line("PROGRESS: 7.6 x"), Line::Progress { percent: 8, text: Some("x".into()) });
        assert_eq!(parse_line("progress: lots"), Line::Output("progress: lots".into()));
        assert_eq!(parse_line("file: /tmp/out.csv"), Line::File("/tmp/out.csv".into()));
        assert_eq!(parse_line("result: 12 rows"), Line::Result("12 rows".into()));
        assert_eq!(parse_line("state: SucceededManualCleanup"), Line::ManualCleanup);
        assert_eq!(parse_line("hello: world"), Line::Output("hello: world".into()));
        assert_eq!(parse_line("plain"), Line::Output("plain".into()));
        assert_eq!(env_key("Report date-1"), "REPORT_DATE_1");
    }

    #[test]
    fn a_program_gets_only_the_passed_and_named_variables() {
        let server = |name: &str| {
            ["PATH", "LC_TIME", "AWS_PROFILE", "CLOUD_SECRET", "BATCHD_ADMIN_PASSWORD", "BATCHD_TASK_ID"]
                .contains(&name)
                .then(|| OsString::from(format!("server-{name}")))
        };
        let spec = CommandSpec {
            program: "p".into(),
            args: vec![],
            env: vec![("PATH".into(), "/opt/bin".into()), ("OUT".into(), "/srv".into())],
            inherit_env: vec!["AWS_PROFILE".into()],
            working_dir: None,
        };
        let task = Task {
            parameters: Some(crate::domain::Parameters(vec![("Day".into(), "mon".into())])),
            ..Task::fixture(7, "report", 1, crate::domain::BatchTaskState::Started)
        };
        let env: std::collections::BTreeMap<String, String> = environment(server, &spec, &task, 2)
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let want = [
            ("AWS_PROFILE", "server-AWS_PROFILE"),
            ("BATCHD_ATTEMPT", "2"),
            ("BATCHD_PARAM_DAY", "mon"),
            ("BATCHD_TASK_ID", "7"),
            ("BATCHD_TASK_NAME", "report"),
            ("LC_TIME", "server-LC_TIME"),
            ("OUT", "/srv"),
            ("PATH", "/opt/bin"),
        ];
        let want: std::collections::BTreeMap<String, String> =
            want.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(env, want);
    }
}
