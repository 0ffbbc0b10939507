//! The one way commands write what they report.
//!
//! Standard output carries the answer (human text by default, one JSON document with
//! `--json`); standard error carries progress and warnings. A reader that goes away
//! (`mlc replay ... | head -1`) is a normal end, not a failure: the first write that finds
//! the pipe closed marks it closed, later writes are dropped, and the command still
//! finishes what it was doing (a half-done `dlq retry --all` because the reader stopped
//! reading would be worse than output nobody reads) and exits with its own status. Loops
//! that only print (`status --watch`) stop when [`closed`] says so.
//!
//! `outln!` would panic on that first failed write (exit 101 with a stack trace).

use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);
/// A write error other than a closed pipe (disk full behind a redirect): the command's
/// answer is incomplete, so the process must not report success.
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// `print!` through the pipe-safe writer.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_fmt(format_args!($($arg)*)) };
}

/// `outln!` through the pipe-safe writer.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::output::write_fmt(format_args!($($arg)*));
        $crate::output::write_fmt(format_args!("\n"));
    }};
}

/// Writes to standard output; a closed pipe ends output quietly (see the module docs).
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        note_error(e);
    }
}

fn note_error(e: std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        if let Ok(mut f) = FAILED.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }
}

/// The reader of standard output has gone away: printing more is pointless.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Flushes standard output at the end of the command; `Err` names a write failure that was
/// not a closed pipe.
pub fn finish() -> Result<(), String> {
    if !CLOSED.load(Ordering::Relaxed) {
        if let Err(e) = std::io::stdout().lock().flush() {
            note_error(e);
        }
    }
    match FAILED.lock().ok().and_then(|f| f.clone()) {
        Some(e) => Err(format!("writing to standard output: {e}")),
        None => Ok(()),
    }
}

/// Set once by `main` from the global `--json` flag.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// `--json` was given: the command prints one JSON document and no human text, and shows
/// no progress.
pub fn json_mode() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Prints `value` as the command's one JSON document (pretty, newline-terminated).
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    outln!("{text}");
    Ok(())
}

/// Human output only: does nothing under `--json`.
pub fn human(f: impl FnOnce()) {
    if !json_mode() {
        f()
    }
}

/// Progress and other live feedback go to standard error, and only when a person watches
/// it: never under `--json`, never into a pipe or a log file.
pub fn interactive() -> bool {
    !json_mode() && std::io::stderr().is_terminal()
}

/// A progress bar on standard error when [`interactive`], else a hidden one (its updates
/// cost nothing). `len` None: a spinner with a count.
pub fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{prefix:>10} {spinner} {pos} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A local time for people: `2026-12-02 01:14:07` in the machine's zone.
pub fn local_time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{ms} ms"),
    }
}

/// An RFC 3339 UTC time for machines.
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// "4 s", "3 min", "2 h", "5 d": how long ago, roughly.
pub fn age(ms: i64) -> String {
    let secs = ((mlc_bus::now_ms() - ms) / 1000).max(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}
