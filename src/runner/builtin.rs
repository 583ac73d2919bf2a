//! The built-in `Sleep` (Noop needs no code): sleeps `ParameterObject.Seconds`, reporting
//! progress each second, and wakes up at once when told to stop.

use std::time::Duration;

use tokio::time::Instant;

use crate::store::runner::Progress;

use super::exec::{Completed, Ctx, RunEnd};

/// Longest sleep accepted: a day.
const MAX_SECONDS: f64 = 86_400.0;

pub async fn sleep(ctx: &mut Ctx) -> RunEnd {
    let secs = match ctx.param("Seconds") {
        None => 1.0,
        Some(text) => match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=MAX_SECONDS).contains(&s) => s,
            _ => {
                return RunEnd::Completed(Completed::failed(format!(
                    "ParameterObject.Seconds must be a number of seconds from 0 to {MAX_SECONDS}, not {text:?}"
                )));
            }
        },
    };
    let total = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let end = start + total;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let next = (now + Duration::from_secs(1)).min(end);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            cause = ctx.stopped() => return RunEnd::Stopped(cause),
        }
        let done = start.elapsed().min(total);
        let percent = if total.is_zero() { 100 } else { (done.as_secs_f64() / secs * 100.0).floor() as i16 };
        ctx.progress(Progress {
            percent: Some(percent.clamp(0, 100)),
            description: Some(format!("slept {} of {} s", done.as_secs(), trim_float(secs))),
            file_name: None,
        });
    }
    RunEnd::Completed(Completed::ok(format!("slept {} s", trim_float(secs))))
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 { format!("{}", v as i64) } else { format!("{v}") }
}
