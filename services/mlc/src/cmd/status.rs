//! `mlc status`: the operator's one screen, once or `--watch`ed.

use crate::status::{self, Status};
use clap::Args;
use mlc_config::Config;
use std::time::Duration;

#[derive(Args)]
pub struct StatusArgs {
    /// Redraw every N seconds until interrupted (with --json: one document per line).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
}

pub async fn run(cfg: Config, args: StatusArgs) -> anyhow::Result<()> {
    let ctx = crate::cmd::read_only(cfg, "mlc-status").await?;
    let json = crate::output::json_mode();
    loop {
        let s = status::gather(&ctx.cfg, &ctx.store, &ctx.js, &ctx.topo).await?;
        match (json, args.watch.is_some()) {
            (true, false) => crate::output::json(&s)?,
            // One line per snapshot: a stream of documents a tool can read line by line.
            (true, true) => outln!("{}", serde_json::to_string(&s)?),
            (false, watch) => {
                if watch && crate::output::interactive() {
                    // Clear the screen and go home, as `watch(1)` does.
                    out!("\x1b[2J\x1b[H");
                }
                render(&s);
            }
        }
        let Some(every) = args.watch else { return Ok(()) };
        if crate::output::closed() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(every.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The human screen.
pub fn render(s: &Status) {
    outln!(
        "status of prefix `{}` at {}",
        s.prefix,
        chrono::DateTime::parse_from_rfc3339(&s.generated_at)
            .map(|t| crate::output::local_time(t.timestamp_millis()))
            .unwrap_or_default()
    );
    outln!("services");
    for v in &s.services {
        let detail = if v.state == "ready" { String::new() } else { format!("  {}", v.detail) };
        outln!("  {:<10} {:<11} {}{detail}", v.service, v.state.replace('_', " "), v.url);
    }
    let w = s.streams.iter().map(|st| st.stream.len()).max().unwrap_or(0).max(7);
    outln!(
        "{:<w2$} {:>10} {:>11} {:>11}  last message",
        "streams",
        "messages",
        "first seq",
        "last seq",
        w2 = w + 2
    );
    for st in &s.streams {
        let last = st
            .last_at
            .as_ref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format!("{} ago", crate::output::age(t.timestamp_millis())))
            .unwrap_or_else(|| "-".into());
        outln!("  {:<w$} {:>10} {:>11} {:>11}  {last}", st.stream, st.messages, st.first_seq, st.last_seq);
    }
    outln!("consumers");
    if s.consumers.is_empty() {
        outln!("  none yet: the services create theirs when they first start");
    }
    for c in &s.consumers {
        outln!(
            "  {:<20} acked through {:>8}  pending {:>6}  in flight {:>5}  redelivered {:>5}",
            c.consumer,
            c.ack_floor_seq,
            c.pending,
            c.in_flight,
            c.redelivered
        );
    }
    outln!("companies");
    if s.companies.is_empty() {
        outln!("  none yet; `mlc company connect` adds one");
    }
    for c in &s.companies {
        outln!(
            "  {} {:<20} grant {:<12} paused {:<5} first connect: {}",
            c.company,
            c.name,
            status::grant_label(&c.grant),
            c.paused,
            if c.first_connect == "applied" { "applied" } else { "awaiting review: writes wait" }
        );
        if let Some(r) = &c.grant_reason {
            if c.grant != "ok" {
                outln!("    grant: {r}; reconnect with `mlc company connect`");
            }
        }
        let b = &c.gusto_budget;
        outln!(
            "    Gusto budget: {} of {} used in the last {} s, {} left",
            b.used,
            b.limit,
            b.window_secs,
            b.left
        );
        if let Some(reason) = &c.events_parked {
            outln!("    events parked: {reason}");
        }
        for p in &c.parked {
            outln!("    parked: {} employee(s): {}", p.employees, p.reason);
        }
        match &c.last_outcome {
            Some(o) => outln!(
                "    last outcome: {} {} {}{}",
                o.outcome,
                o.visma_employee_cd,
                o.age_secs.map(|a| format!("{a} s ago")).unwrap_or_default(),
                if o.detail.is_empty() { String::new() } else { format!(" ({})", o.detail) }
            ),
            None => outln!("    last outcome: none yet"),
        }
        if c.dead_letters > 0 {
            outln!("    dead letters: {} (`mlc dlq list --company {}`)", c.dead_letters, c.company);
        }
    }
    outln!("outcomes  {}", s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    outln!("dead letters  {} (mlc dlq list)", s.dead_letters);
}
