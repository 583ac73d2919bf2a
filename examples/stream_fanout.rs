//! Event-stream fan-out benchmark client (run by `bench/stream.sh`): opens N idle subscribers to
//! `GET /api/v1/BatchTask/Events/stream`, reports the server's RSS and CPU while they sit idle,
//! then changes one task E times (a PUT of its Description, one at a time) and reports how long
//! each change took to reach the first and the last of the N subscribers.
//!
//! Loopback only. Environment: BASE (http://127.0.0.1:18790), AUTH (admin:bench), SUBSCRIBERS
//! (1000), EVENTS (50), IDLE_SECONDS (10), SERVER_PID (for RSS and CPU; optional), TASK (the id
//! of a task to change).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn num(name: &str, default: usize) -> usize {
    env(name, &default.to_string()).parse().expect("a number")
}

/// RSS (KiB) and CPU ticks (user + system) of a process.
fn proc_stats(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches(" kB").trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let base = env("BASE", "http://127.0.0.1:18790");
    let (user, password) =
        env("AUTH", "admin:bench").split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())).unwrap();
    let subscribers = num("SUBSCRIBERS", 1000);
    let events = num("EVENTS", 50);
    let idle = Duration::from_secs(num("IDLE_SECONDS", 10) as u64);
    let task: u32 = env("TASK", "1").parse().unwrap();
    let pid: Option<u32> = std::env::var("SERVER_PID").ok().and_then(|p| p.parse().ok());
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();

    // Each subscriber sends (change number, when it arrived) for every event it reads.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let url = Arc::new(format!("{base}/api/v1/BatchTask/Events/stream?task={task}"));
    for _ in 0..subscribers {
        let (client, url, tx, ready) = (client.clone(), url.clone(), tx.clone(), ready_tx.clone());
        let (user, password) = (user.clone(), password.clone());
        tokio::spawn(async move {
            let mut res = client.get(url.as_str()).basic_auth(user, Some(password)).send().await.expect("subscribe");
            assert_eq!(res.status(), 200, "subscribe");
            let mut buf = String::new();
            let mut announced = false;
            while let Ok(Some(chunk)) = res.chunk().await {
                let at = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if !announced {
                        announced = true;
                        let _ = ready.send(());
                    }
                    if let Some(n) =
                        block.find("\"Description\":\"fanout-").map(|i| i + "\"Description\":\"fanout-".len())
                    {
                        let digits: String = block[n..].chars().take_while(char::is_ascii_digit).collect();
                        if let Ok(i) = digits.parse() {
                            let _ = tx.send((i, at));
                        }
                    }
                }
            }
        });
    }
    drop(ready_tx);
    let connecting = Instant::now();
    for _ in 0..subscribers {
        ready_rx.recv().await.expect("every subscriber connects");
    }
    println!("subscribers={subscribers} connected in {:.2}s", connecting.elapsed().as_secs_f64());

    if let Some(pid) = pid {
        let (rss_before, ticks_before) = proc_stats(pid).expect("server stats");
        tokio::time::sleep(idle).await;
        let (rss, ticks) = proc_stats(pid).expect("server stats");
        let cpu = (ticks - ticks_before) as f64 / ticks_per_second() / idle.as_secs_f64() * 100.0;
        println!(
            "idle: server RSS {:.1} MiB (at connect {:.1} MiB), server CPU {cpu:.2}% of one core over {}s",
            rss as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            idle.as_secs()
        );
    }

    let mut first = Vec::with_capacity(events);
    let mut last = Vec::with_capacity(events);
    let mut after_answer = Vec::with_capacity(events);
    for i in 0..events {
        let sent = Instant::now();
        let res = client
            .put(format!("{base}/api/v1/BatchTask/{task}"))
            .basic_auth(&user, Some(&password))
            .json(&serde_json::json!({"Description": format!("fanout-{i}")}))
            .send()
            .await
            .expect("put");
        assert!(res.status().is_success(), "put: {}", res.status());
        let answered = Instant::now();
        let mut arrivals: HashMap<usize, Vec<Instant>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while arrivals.get(&i).map_or(0, Vec::len) < subscribers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((n, at))) => arrivals.entry(n).or_default().push(at),
                _ => panic!("change {i} reached {} of {subscribers} subscribers", arrivals.get(&i).map_or(0, Vec::len)),
            }
        }
        let got = &arrivals[&i];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        first.push(ms(*got.iter().min().unwrap() - sent));
        last.push(ms(*got.iter().max().unwrap() - sent));
        after_answer.push(ms(got.iter().max().unwrap().saturating_duration_since(answered)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for v in [&mut first, &mut last, &mut after_answer] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "fan-out over {events} changes, from the PUT being sent: first subscriber p50 {:.1} ms p99 {:.1} ms; \
         last of {subscribers} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        percentile(&first, 0.5),
        percentile(&first, 0.99),
        percentile(&last, 0.5),
        percentile(&last, 0.99),
        last[last.len() - 1]
    );
    println!(
        "last subscriber after the PUT's answer (commit done): p50 {:.1} ms p99 {:.1} ms",
        percentile(&after_answer, 0.5),
        percentile(&after_answer, 0.99)
    );
}
