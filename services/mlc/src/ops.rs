//! Operator commands: companies, subscription, backfill, replay, dead letters, status,
//! explain.

use crate::ctx::{self, Ctx};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use gusto::GrantId;
use mlc_bus::replay::{Replay, Start};
use mlc_bus::StreamKind;
use mlc_config::Config;
use mlc_proto::v1::{DeadLetter, EmployeeSnapshot, EventSource, GustoEvent, SyncOutcome, VismaCommand};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

// ---------------------------------------------------------------------- companies

#[derive(Subcommand)]
pub enum CompanyCommand {
    /// Connects a company through Gusto's consent page: checks every precondition, prints
    /// the authorize URL, waits for the gateway's /oauth/callback, stores the grant.
    Connect(crate::cmd::connect::ConnectArgs),
    /// Adds (or re-authorises) a company: exchanges its Gusto authorisation code, stores
    /// the grant encrypted, and links its Visma tenant and mapping file.
    Add {
        #[arg(long)]
        company: String,
        #[arg(long)]
        name: String,
        /// The `code` Gusto's /oauth/authorize redirect returned.
        #[arg(long)]
        code: String,
        /// Defaults to gusto.redirect_uri.
        #[arg(long)]
        redirect_uri: Option<String>,
        /// A key of visma.tenants in the configuration.
        #[arg(long)]
        visma_tenant: String,
        #[arg(long)]
        mapping: PathBuf,
        /// Create Visma employees without the first-connect review (only for a Visma
        /// company that holds none of these people yet).
        #[arg(long)]
        skip_review: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Holds the company's work (events wait in JetStream, nothing is lost).
    Pause {
        company: String,
    },
    Resume {
        company: String,
    },
}

pub async fn company(cfg: Config, cmd: CompanyCommand) -> anyhow::Result<()> {
    let store = Arc::new(ctx::open_store(&cfg).await?);
    match cmd {
        CompanyCommand::Add { company, name, code, redirect_uri, visma_tenant, mapping, skip_review } => {
            drop(store);
            crate::cmd::connect::add_with_code(
                &cfg,
                &company,
                &name,
                &code,
                redirect_uri,
                &visma_tenant,
                &mapping,
                skip_review,
            )
            .await?;
        }
        CompanyCommand::Connect(args) => {
            drop(store);
            crate::cmd::connect::connect(cfg, args).await?;
        }
        CompanyCommand::List { json } => {
            let companies = store.companies().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&companies)?);
            } else {
                println!(
                    "{:<38} {:<24} {:<8} {:<14} {:<7} tenant",
                    "company", "name", "paused", "grant", "review"
                );
                for c in companies {
                    let grant =
                        store.grant(&c.grant_id).await?.map(|g| g.status).unwrap_or_else(|| "missing".into());
                    println!(
                        "{:<38} {:<24} {:<8} {:<14} {:<7} {}",
                        c.company_uuid,
                        c.name,
                        c.paused,
                        grant,
                        if c.first_connect_applied { "done" } else { "open" },
                        c.visma_tenant
                    );
                }
            }
        }
        CompanyCommand::Pause { company } | CompanyCommand::Resume { company } if company.is_empty() => {
            bail!("a company uuid is required")
        }
        CompanyCommand::Pause { company } => {
            if !store.set_company_paused(&company, true).await? {
                bail!("unknown company {company}");
            }
            println!("company {company} paused; its events wait in JetStream");
        }
        CompanyCommand::Resume { company } => {
            if !store.set_company_paused(&company, false).await? {
                bail!("unknown company {company}");
            }
            println!("company {company} resumed");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- subscribe

#[derive(Args)]
pub struct SubscribeArgs {
    /// Public URL of the gateway's webhook endpoint.
    #[arg(long)]
    pub url: Option<String>,
    /// Only finish the handshake of this subscription with the stored token.
    #[arg(long)]
    pub verify: Option<String>,
    /// How long to wait for Gusto's verification POST to reach the gateway.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
}

pub async fn subscribe(cfg: Config, args: SubscribeArgs) -> anyhow::Result<()> {
    let ctx = Ctx::connect(cfg, "mlc-subscribe").await?;
    let gusto = ctx::gusto_client(&ctx.cfg, ctx.store.clone())?;
    let uuid = subscribe_with(
        &ctx.store,
        &gusto,
        &ctx.js,
        &ctx.topo,
        args.url.as_deref(),
        args.verify.as_deref(),
        args.wait_secs,
    )
    .await?;
    println!("webhook subscription {uuid} verified; the gateway now trusts its token");
    Ok(())
}

/// Candidates one run tries at most (the `HANDSHAKES` stream keeps 100).
const MAX_HANDSHAKE_TRIES: usize = 120;

/// Creates a subscription (unless `existing` names one), then tries the verification
/// tokens that reached the gateway, newest first, with Gusto's verify call until Gusto
/// accepts one: junk POSTs (anyone can send that shape) cost a refused try each, and cannot
/// hide Gusto's own token. The accepted token is kept encrypted in the store and put into
/// the `WEBHOOK_KEYS` bucket, from which the gateway takes its keys.
pub async fn subscribe_with(
    store: &mlc_store::Store,
    gusto: &gusto::GustoClient,
    js: &async_nats::jetstream::Context,
    topo: &mlc_bus::Topology,
    url: Option<&str>,
    existing: Option<&str>,
    wait_secs: u64,
) -> anyhow::Result<String> {
    let stream_name = topo.handshakes_stream();
    let mut stream = js.get_stream(&stream_name).await.with_context(|| format!("stream {stream_name}"))?;
    // A new subscription's token arrives after it is created: older candidates are not it.
    let floor = match existing {
        Some(_) => 0,
        None => stream.info().await.context("reading the handshakes stream")?.state.last_sequence,
    };
    let uuid = match (existing, url) {
        (Some(u), _) => u.to_string(),
        (None, Some(url)) => {
            let sub = gusto
                .create_webhook_subscription(
                    url,
                    &["Company", "Employee", "EmployeeJobCompensation", "Location"],
                )
                .await
                .context("creating the webhook subscription")?;
            sub.uuid
        }
        (None, None) => bail!("give --url to create a subscription, or --verify UUID to finish one"),
    };
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(wait_secs);
    // If Gusto's POST was turned away (the gateway's rate bound under a flood), ask again.
    let resend_every = std::time::Duration::from_secs(5);
    let mut next_resend = started + resend_every;
    let mut tried = std::collections::HashSet::new();
    loop {
        let (first, last) = {
            let info = stream.info().await.context("reading the handshakes stream")?;
            (info.state.first_sequence, info.state.last_sequence)
        };
        let low = first.max(floor + 1);
        let mut seq = last;
        while seq >= low && seq > 0 {
            if tried.insert(seq) {
                // Gone meanwhile (the stream discards its oldest): not a candidate any more.
                if let Ok(m) = stream.get_raw_message(seq).await {
                    if tried.len() > MAX_HANDSHAKE_TRIES {
                        bail!("tried {MAX_HANDSHAKE_TRIES} verification tokens and Gusto accepted none; is someone flooding the webhook URL? Try `mlc subscribe --verify {uuid}` later");
                    }
                    let token = String::from_utf8_lossy(&m.payload).into_owned();
                    match gusto.verify_webhook_subscription(&uuid, &gusto::Secret::new(token.clone())).await {
                        Ok(_) => {
                            keep_webhook_key(store, js, topo, &uuid, &token).await?;
                            return Ok(uuid);
                        }
                        // Not the token of this subscription.
                        Err(gusto::GustoError::Api { status: 422, .. }) => {}
                        Err(e) => return Err(e).context("verifying the subscription with Gusto"),
                    }
                }
            }
            seq -= 1;
        }
        let now = std::time::Instant::now();
        if now > deadline {
            bail!("Gusto's verification token did not reach the gateway within {wait_secs} s; is it reachable at the subscription URL?");
        }
        if now > next_resend {
            if let Err(e) = gusto.request_verification_token(&uuid).await {
                eprintln!("asking Gusto to send the verification token again failed: {e}");
            }
            next_resend = now + resend_every;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Keeps a token Gusto accepted: sealed in the store (the record), and in the
/// `WEBHOOK_KEYS` bucket (what the gateway reads).
async fn keep_webhook_key(
    store: &mlc_store::Store,
    js: &async_nats::jetstream::Context,
    topo: &mlc_bus::Topology,
    subscription: &str,
    token: &str,
) -> anyhow::Result<()> {
    store.put_verification_token(token).await?;
    if let Some((id, _, _)) = store.latest_verification_token().await? {
        store.mark_verification_token_verified(id).await?;
    }
    let bucket = topo.webhook_keys_bucket();
    let kv = js.get_key_value(&bucket).await.with_context(|| format!("KV bucket {bucket}"))?;
    kv.put(subscription, bytes::Bytes::copy_from_slice(token.as_bytes()))
        .await
        .with_context(|| format!("putting the webhook key into {bucket}"))?;
    Ok(())
}

// ---------------------------------------------------------------------- backfill

/// Queues every employee of the company for hydration: the initial full sync. Reads the
/// paged list within the rate budget; safe to run again (unchanged employees make no
/// snapshot).
pub async fn backfill(ctx: &Ctx, company: &str, progress: bool) -> anyhow::Result<usize> {
    let c = ctx.company(company).await?;
    let gusto = ctx.gusto().await?;
    let grant = GrantId(c.grant_id.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut queued = 0;
    let mut page = 1;
    loop {
        let p = gusto.list_employees(&grant, company, page, 100).await.context("listing Gusto employees")?;
        let more = p.has_more(100);
        for e in &p.items {
            let ev = GustoEvent {
                event_uuid: format!("backfill-{run}-{}", e.uuid),
                event_type: "employee.backfill".into(),
                company_uuid: company.to_string(),
                entity_type: "Employee".into(),
                entity_uuid: e.uuid.clone(),
                timestamp: chrono::Utc::now().timestamp(),
                raw_body: Vec::new(),
                received_at_ms: mlc_bus::now_ms(),
                trace: None,
                source: EventSource::Backfill as i32,
            };
            ctx.publisher.publish(&ctx.topo.gusto_event(company, "Employee"), &ev.event_uuid, &ev).await?;
            queued += 1;
        }
        if progress {
            eprintln!("backfill: page {page}, {queued} employees queued");
        }
        if !more {
            return Ok(queued);
        }
        page += 1;
    }
}

// ---------------------------------------------------------------------- replay

#[derive(Args)]
pub struct ReplayArgs {
    /// gusto-events, employee-state or visma-commands.
    pub stream: String,
    #[arg(long, conflicts_with = "since")]
    pub from_seq: Option<u64>,
    /// RFC 3339 time, e.g. 2026-11-26T10:00:00Z.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub company: Option<String>,
    #[arg(long)]
    pub employee: Option<String>,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn replay(cfg: Config, args: ReplayArgs) -> anyhow::Result<()> {
    let kind = StreamKind::parse(&args.stream).with_context(|| {
        format!("unknown stream {:?}; use gusto-events, employee-state or visma-commands", args.stream)
    })?;
    let start = match (&args.from_seq, &args.since) {
        (Some(s), _) => Start::Sequence(*s),
        (None, Some(t)) => Start::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--since {t:?} is not an RFC 3339 time"))?
                .timestamp_millis(),
        ),
        (None, None) => bail!("give --from-seq N or --since TIME"),
    };
    let ctx = Ctx::connect(cfg, "mlc-replay").await?;
    match kind {
        StreamKind::EmployeeState => replay_state(&ctx, start, &args).await,
        StreamKind::GustoEvents | StreamKind::VismaCommands => republish(&ctx, kind, start, &args).await,
        _ => bail!(
            "{} is a record of outcomes; replay gusto-events, employee-state or visma-commands",
            args.stream
        ),
    }
}

/// EMPLOYEE_STATE through the projector's mapping path: after a mapping change this
/// emits one command per affected employee; `--dry-run` prints them as a diff instead.
async fn replay_state(ctx: &Ctx, start: Start, args: &ReplayArgs) -> anyhow::Result<()> {
    let projector = ctx.projector().await?;
    let results = projector
        .replay_state(start, args.company.as_deref(), args.employee.as_deref(), args.dry_run)
        .await?;
    let (mut emitted, mut unchanged, mut superseded, mut failed) = (0, 0, 0, 0);
    for (seq, r) in &results {
        match r {
            Ok(mlc_projector::MapOutcome::Emitted(cmd)) => {
                emitted += 1;
                print_command_diff(ctx, *seq, cmd, args.dry_run).await?;
            }
            Ok(mlc_projector::MapOutcome::Unchanged) => unchanged += 1,
            Ok(mlc_projector::MapOutcome::Superseded) => superseded += 1,
            Err(e) => {
                failed += 1;
                println!("seq {seq}: {e:?}");
            }
        }
    }
    println!(
        "replayed {} snapshots: {} {} command(s), {unchanged} unchanged, {superseded} superseded, {failed} failed",
        results.len(),
        if args.dry_run { "would emit" } else { "emitted" },
        emitted
    );
    Ok(())
}

async fn print_command_diff(ctx: &Ctx, seq: u64, cmd: &VismaCommand, dry_run: bool) -> anyhow::Result<()> {
    let subject = ctx.topo.visma_command(&cmd.company_uuid, &cmd.employee_uuid);
    let last = mlc_bus::last_on_subject::<VismaCommand>(
        &ctx.js,
        &ctx.topo.stream(StreamKind::VismaCommands),
        &subject,
    )
    .await?;
    let target = cmd.fields.clone().unwrap_or_default();
    let verb = if dry_run { "would" } else { "will" };
    if !cmd.parked_reason.is_empty() {
        println!("snapshot {seq} employee {}: {verb} park: {}", cmd.employee_uuid, cmd.parked_reason);
        return Ok(());
    }
    match last.and_then(|l| l.message.fields) {
        None => {
            println!("snapshot {seq} employee {}: {verb} create {}", cmd.employee_uuid, target.employee_cd)
        }
        Some(current) => {
            println!("snapshot {seq} employee {} ({}): {verb} update", cmd.employee_uuid, target.employee_cd);
            for ch in mlc_domain::diff_fields(&current, &target) {
                println!("  - {}: {}\n  + {}: {}", ch.field, ch.from, ch.field, ch.to);
            }
        }
    }
    Ok(())
}

/// GUSTO_EVENTS (re-hydrate from Gusto) or VISMA_COMMANDS (re-apply through the writer):
/// the messages are published again under new ids and take the normal path.
///
/// For commands only the newest of each employee in the range is re-delivered (an older
/// one would be superseded anyway), and the writer's idempotency hash of that employee is
/// cleared first, so the writer compares with what Visma really holds and writes only
/// the difference: after a Visma restore that re-creates what was lost; when nothing
/// changed it makes no write.
async fn republish(ctx: &Ctx, kind: StreamKind, start: Start, args: &ReplayArgs) -> anyhow::Result<()> {
    let filter = match (kind, &args.company, &args.employee) {
        (StreamKind::VismaCommands, Some(c), Some(e)) => ctx.topo.visma_command(c, e),
        (_, c, _) => ctx.topo.company_filter(kind, c.as_deref()),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut replay = Replay::open(&ctx.js, &ctx.topo.stream(kind), &filter, start).await?;
    let mut selected: Vec<mlc_bus::replay::Replayed> = Vec::new();
    let mut newest: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(m) = replay.next().await {
        let m = m?;
        if kind == StreamKind::GustoEvents {
            if let Some(e) = &args.employee {
                let ev: GustoEvent = mlc_bus::decode(&m.subject, &m.payload)?;
                if &ev.entity_uuid != e {
                    continue;
                }
            }
            selected.push(m);
        } else if let Some(&i) = newest.get(&m.subject) {
            selected[i] = m;
        } else {
            newest.insert(m.subject.clone(), selected.len());
            selected.push(m);
        }
    }
    for m in &selected {
        if args.dry_run {
            println!("would re-deliver {} seq {}", m.subject, m.sequence);
            continue;
        }
        if kind == StreamKind::VismaCommands {
            if let Some((company, employee)) = ctx.topo.split_subject(kind, &m.subject) {
                if let Some(mut link) = ctx.store.link(company, employee).await? {
                    link.last_command_hash = None;
                    ctx.store.put_link(&link).await?;
                }
            }
        }
        let mut headers = async_nats::HeaderMap::new();
        if let Some(h) = &m.headers {
            for key in ["traceparent", mlc_bus::HEADER_MSG_TYPE] {
                if let Some(v) = h.get(key) {
                    headers.insert(key, v.as_str());
                }
            }
        }
        ctx.publisher
            .publish_raw(&m.subject, &format!("replay-{run}-{}", m.sequence), m.payload.clone(), headers)
            .await?;
    }
    println!(
        "{} {} message(s) of {}",
        if args.dry_run { "would re-deliver" } else { "re-delivered" },
        selected.len(),
        ctx.topo.stream(kind)
    );
    Ok(())
}

// ---------------------------------------------------------------------- dead letters

#[derive(Subcommand)]
pub enum DlqCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        seq: u64,
    },
    /// Retries and removes the letter: writer and mapper letters are re-derived from the
    /// employee's newest snapshot under the current mapping; others are re-delivered.
    Retry {
        seq: u64,
    },
    /// Removes the letter for good.
    Drop {
        seq: u64,
    },
}

pub async fn dead_letters(ctx: &Ctx) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
    let stream = ctx.topo.stream(StreamKind::DeadLetters);
    let mut replay =
        Replay::open(&ctx.js, &stream, &ctx.topo.wildcard(StreamKind::DeadLetters), Start::Sequence(1))
            .await?;
    let mut out = Vec::new();
    while let Some(m) = replay.next().await {
        let m = m?;
        out.push((m.sequence, mlc_bus::decode(&m.subject, &m.payload)?));
    }
    Ok(out)
}

pub async fn dlq(cfg: Config, cmd: DlqCommand) -> anyhow::Result<()> {
    let ctx = Ctx::connect(cfg, "mlc-dlq").await?;
    let stream_name = ctx.topo.stream(StreamKind::DeadLetters);
    let letter = |seq: u64| {
        let ctx = &ctx;
        async move {
            dead_letters(ctx)
                .await?
                .into_iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, l)| l)
                .with_context(|| format!("no dead letter at sequence {seq}"))
        }
    };
    match cmd {
        DlqCommand::List { json } => {
            let letters = dead_letters(&ctx).await?;
            if json {
                let rows: Vec<_> = letters
                    .iter()
                    .map(|(s, l)| {
                        serde_json::json!({"seq": s, "stage": l.stage, "company": l.company_uuid,
                            "subject": l.original_subject, "reason": l.reason, "attempts": l.attempts})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:>6}  {:<9} {:<38} {:>8}  reason", "seq", "stage", "company", "attempts");
                for (s, l) in &letters {
                    println!("{s:>6}  {:<9} {:<38} {:>8}  {}", l.stage, l.company_uuid, l.attempts, l.reason);
                }
                println!("{} dead letter(s)", letters.len());
            }
        }
        DlqCommand::Show { seq } => {
            let l = letter(seq).await?;
            println!(
                "stage:    {}\ncompany:  {}\nsubject:  {}\nid:       {}\nattempts: {}\nreason:   {}",
                l.stage, l.company_uuid, l.original_subject, l.original_id, l.attempts, l.reason
            );
            if let Ok(c) = mlc_bus::decode::<VismaCommand>(&l.original_subject, &l.original_payload) {
                if l.stage == "writer" || l.stage == "mapper" {
                    println!("command:  {c:#?}");
                }
            }
        }
        DlqCommand::Retry { seq } => {
            let l = letter(seq).await?;
            let done = crate::cmd::retry::retry(&ctx, seq, &l).await?;
            ctx.js.get_stream(&stream_name).await?.delete_message(seq).await?;
            println!("{done}");
        }
        DlqCommand::Drop { seq } => {
            letter(seq).await?;
            ctx.js.get_stream(&stream_name).await?.delete_message(seq).await?;
            println!("letter {seq} dropped");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- status

pub async fn status(cfg: Config, json: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(cfg, "mlc-status").await?;
    let mut consumers = Vec::new();
    for spec in mlc_bus::ConsumerSpec::ALL {
        let stream = ctx.js.get_stream(ctx.topo.stream(spec.stream)).await?;
        for durable in ctx.topo.durables(&spec) {
            let mut c = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&durable)
                .await
                .map_err(|e| anyhow::anyhow!("consumer {durable}: {e}"))?;
            let info = c.info().await?;
            consumers.push(serde_json::json!({
                "consumer": durable, "stream": ctx.topo.stream(spec.stream),
                "pending": info.num_pending, "in_flight": info.num_ack_pending, "redelivered": info.num_redelivered,
            }));
        }
    }
    let mut companies = Vec::new();
    for c in ctx.store.companies().await? {
        let grant = ctx.store.grant(&c.grant_id).await?;
        let parked = crate::gusto_version::parked_reason(&ctx.store, &c.company_uuid).await?;
        companies.push(serde_json::json!({
            "company": c.company_uuid, "name": c.name, "paused": c.paused, "parked": parked,
            "grant": grant.as_ref().map(|g| g.status.clone()).unwrap_or_else(|| "missing".into()),
            "grant_reason": grant.and_then(|g| g.status_reason),
            "first_connect": if c.first_connect_applied { "applied" } else { "awaiting review: writes wait" },
            "visma_tenant": c.visma_tenant,
        }));
    }
    let letters = dead_letters(&ctx).await?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = Vec::new();
    let mut replay = Replay::open(
        &ctx.js,
        &ctx.topo.stream(StreamKind::SyncOutcomes),
        &ctx.topo.wildcard(StreamKind::SyncOutcomes),
        Start::Sequence(1),
    )
    .await?;
    while let Some(m) = replay.next().await {
        let m = m?;
        let o: SyncOutcome = mlc_bus::decode(&m.subject, &m.payload)?;
        *outcomes
            .entry(o.outcome().as_str_name().trim_start_matches("OUTCOME_").to_lowercase())
            .or_default() += 1;
        last.push(o);
        if last.len() > 10 {
            last.remove(0);
        }
    }
    let report = serde_json::json!({
        "consumers": consumers, "companies": companies, "dead_letters": letters.len(), "outcomes": outcomes,
        "last_outcomes": last.iter().map(|o| serde_json::json!({
            "employee": o.employee_uuid, "outcome": o.outcome().as_str_name(), "visma_employee_cd": o.visma_employee_cd,
            "detail": o.detail, "latency_ms": o.latency_ms})).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("consumers");
    for c in &consumers {
        println!(
            "  {:<20} pending {:>6}  in flight {:>5}  redelivered {:>5}",
            c["consumer"].as_str().unwrap_or(""),
            c["pending"],
            c["in_flight"],
            c["redelivered"]
        );
    }
    println!("companies");
    for c in &companies {
        println!(
            "  {} {:<20} grant {:<12} paused {:<5} first connect: {}",
            c["company"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or(""),
            c["grant"].as_str().unwrap_or(""),
            c["paused"],
            c["first_connect"].as_str().unwrap_or("")
        );
        if let Some(reason) = c["parked"].as_str() {
            println!("    events parked: {reason}");
        }
    }
    println!("outcomes  {}", outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    println!("dead letters  {} (mlc dlq list)", letters.len());
    Ok(())
}

// ---------------------------------------------------------------------- explain

pub async fn explain(cfg: Config, employee: &str, json: bool) -> anyhow::Result<()> {
    let ctx = Ctx::connect(cfg, "mlc-explain").await?;
    let rows = ctx
        .store
        .audit(&mlc_store::AuditQuery {
            employee: Some(employee.to_string()),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let company = rows.iter().find_map(|r| r.company.clone());
    let mut timeline = Vec::new();
    for r in &rows {
        timeline.push(serde_json::json!({"at": r.recorded_at, "what": r.kind, "trace_id": r.trace_id, "detail": r.detail}));
    }
    if let Some(company) = &company {
        for (kind, subject) in [
            (StreamKind::EmployeeState, ctx.topo.employee_state(company, employee)),
            (StreamKind::VismaCommands, ctx.topo.visma_command(company, employee)),
            (StreamKind::SyncOutcomes, ctx.topo.sync_outcome(company, employee)),
        ] {
            let mut replay =
                Replay::open(&ctx.js, &ctx.topo.stream(kind), &subject, Start::Sequence(1)).await?;
            while let Some(m) = replay.next().await {
                let m = m?;
                let tp =
                    m.headers.as_ref().and_then(|h| h.get("traceparent")).map(|v| v.as_str().to_string());
                let detail = match kind {
                    StreamKind::EmployeeState => {
                        let s: EmployeeSnapshot = mlc_bus::decode(&m.subject, &m.payload)?;
                        let c = s.content.unwrap_or_default();
                        serde_json::json!({"status": c.status().as_str_name(), "title": c.job_title,
                            "department": c.department_title, "location": c.work_location.map(|l| l.city),
                            "causing_events": s.causing_event_ids, "content_hash": s.content_hash})
                    }
                    StreamKind::VismaCommands => {
                        let c: VismaCommand = mlc_bus::decode(&m.subject, &m.payload)?;
                        serde_json::json!({"command_id": c.command_id, "kind": c.kind().as_str_name(),
                            "mapping_revision": c.mapping_revision, "parked": c.parked_reason,
                            "employee_cd": c.fields.map(|f| f.employee_cd)})
                    }
                    _ => {
                        let o: SyncOutcome = mlc_bus::decode(&m.subject, &m.payload)?;
                        serde_json::json!({"outcome": o.outcome().as_str_name(), "detail": o.detail,
                            "calls": o.visma_calls, "latency_ms": o.latency_ms})
                    }
                };
                timeline.push(serde_json::json!({"stream": ctx.topo.stream(kind), "seq": m.sequence, "traceparent": tp, "detail": detail}));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&timeline)?);
    } else {
        println!("employee {employee} (company {})", company.as_deref().unwrap_or("unknown"));
        for t in &timeline {
            println!("{t}");
        }
    }
    Ok(())
}
