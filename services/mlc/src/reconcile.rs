//! `mlc reconcile`: Gusto against Visma, field by field. The expected Visma record of
//! each Gusto employee is computed exactly as the live path computes it (normalise, then
//! map), so a difference is real drift: a missed webhook, or an edit made in Visma.

use crate::ctx::Ctx;
use anyhow::Context as _;
use clap::Args;
use gusto::GrantId;
use mlc_domain::{FieldChange, Mapped};
use mlc_proto::v1::{EmployeeSnapshot, EventSource, GustoEvent, VismaCommand};
use mlc_store::{AuditEntry, AuditKind};
use std::collections::HashMap;

#[derive(Args, Clone)]
pub struct ReconcileArgs {
    /// The company to compare: its Gusto uuid (`mlc company list`).
    #[arg(long)]
    pub company: String,
    /// Emit what fixes the drift: re-hydration for missed webhooks, a re-apply for
    /// records changed in Visma.
    #[arg(long)]
    pub repair: bool,
    /// Print only the summary and the drifted employees.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub employee_uuid: String,
    pub name: String,
    /// The employee's office in Gusto (work location city), for the summary table.
    pub office: String,
    pub employee_cd: String,
    /// in_sync, drift, missing, parked
    pub state: &'static str,
    pub changes: Vec<(String, String, String)>,
    pub detail: String,
    /// What Visma should hold, as the live path computes it.
    #[serde(skip)]
    pub expected: Option<mlc_proto::v1::VismaEmployeeFields>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub company: String,
    /// One per Gusto employee: the in-sync figure is over Gusto's people.
    pub rows: Vec<Row>,
    /// Visma employees no Gusto employee maps to (kept by hand, never touched), as
    /// "number name".
    pub visma_only: Vec<String>,
    pub repairs: usize,
}

impl Report {
    pub fn in_sync_count(&self) -> usize {
        self.rows.iter().filter(|r| r.state == "in_sync").count()
    }
    pub fn in_sync(&self) -> bool {
        self.in_sync_count() == self.rows.len()
    }
}

/// Compares without printing.
pub async fn compare(ctx: &Ctx, company_uuid: &str) -> anyhow::Result<Report> {
    compare_with(ctx, company_uuid, None, None).await
}

/// As [`compare`], under another mapping file (`mlc mapping preview --mapping`) and for one
/// employee only when `only` is given. Reads both systems, writes nothing.
pub async fn compare_with(
    ctx: &Ctx,
    company_uuid: &str,
    mapping_file: Option<&std::path::Path>,
    only: Option<&str>,
) -> anyhow::Result<Report> {
    let company = ctx.company(company_uuid).await?;
    let path = mapping_file.map(|p| p.display().to_string()).unwrap_or_else(|| company.mapping_path.clone());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading mapping {path}"))?;
    let mapping = mlc_domain::Mapping::from_toml_str(&text, &path)?;
    compare_under(ctx, company_uuid, &mapping, only).await
}

/// As [`compare_with`], under a mapping already parsed (the console's edited mapping text).
pub async fn compare_under(
    ctx: &Ctx,
    company_uuid: &str,
    mapping: &mlc_domain::Mapping,
    only: Option<&str>,
) -> anyhow::Result<Report> {
    let company = ctx.company(company_uuid).await?;
    let gusto = ctx.gusto().await?;
    let grant = GrantId(company.grant_id.clone());
    let employees =
        gusto.list_all_employees(&grant, company_uuid, 100).await.context("listing Gusto employees")?;
    let locations: HashMap<String, gusto::Location> = gusto
        .list_locations(&grant, company_uuid)
        .await
        .context("listing Gusto locations")?
        .into_iter()
        .map(|l| (l.uuid.clone(), l))
        .collect();
    let visma = ctx.visma(&company.visma_tenant)?;
    let in_visma: HashMap<String, visma::dto::EmployeeDto> = visma
        .list_all_employees(None)
        .await
        .context("listing Visma employees")?
        .into_iter()
        .filter_map(|e| e.employee_number.clone().map(|cd| (cd, e)))
        .collect();
    let links: HashMap<String, String> =
        ctx.store.links(company_uuid).await?.into_iter().map(|l| (l.employee_uuid, l.employee_cd)).collect();

    if let Some(id) = only {
        if !employees.iter().any(|e| e.uuid == id) {
            anyhow::bail!("no employee {id} in Gusto company {company_uuid}");
        }
    }
    let mut rows = Vec::new();
    for e in employees.iter().filter(|e| only.is_none_or(|id| e.uuid == id)) {
        let content = mlc_projector::normalize(e, &locations);
        let name = format!("{} {}", content.first_name, content.last_name);
        let office = content
            .work_location
            .as_ref()
            .map(|l| l.city.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "-".into());
        let snapshot = EmployeeSnapshot {
            company_uuid: company_uuid.to_string(),
            employee_uuid: e.uuid.clone(),
            content: Some(content),
            ..Default::default()
        };
        let (kind, mut expected) = match mlc_domain::map_snapshot(&snapshot, mapping) {
            Mapped::Command { kind, fields, .. } => (kind, fields),
            Mapped::Park { reason } => {
                rows.push(Row {
                    employee_uuid: e.uuid.clone(),
                    name,
                    office,
                    employee_cd: String::new(),
                    state: "parked",
                    changes: Vec::new(),
                    detail: reason,
                    expected: None,
                });
                continue;
            }
        };
        let cd = links.get(&e.uuid).cloned().unwrap_or_else(|| expected.employee_cd.clone());
        expected.employee_cd = cd.clone();
        if kind == mlc_proto::v1::CommandKind::Deactivate {
            expected.status = mlc_proto::v1::VismaStatus::Inactive as i32;
        }
        let row = match in_visma.get(&cd) {
            None => Row {
                employee_uuid: e.uuid.clone(),
                name,
                office,
                employee_cd: cd,
                state: "missing",
                changes: Vec::new(),
                detail: "not in Visma".into(),
                expected: Some(expected.clone()),
            },
            Some(dto) => {
                let current = mlc_writer::fields_from_dto(dto, &cd);
                let changes: Vec<FieldChange> = mlc_domain::diff_fields(&current, &expected);
                Row {
                    employee_uuid: e.uuid.clone(),
                    name,
                    office,
                    employee_cd: cd,
                    state: if changes.is_empty() { "in_sync" } else { "drift" },
                    changes: changes.into_iter().map(|c| (c.field.to_string(), c.from, c.to)).collect(),
                    detail: String::new(),
                    expected: Some(expected.clone()),
                }
            }
        };
        rows.push(row);
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let compared: std::collections::HashSet<&str> = rows.iter().map(|r| r.employee_cd.as_str()).collect();
    let mut visma_only: Vec<String> = in_visma
        .iter()
        .filter(|(cd, _)| !compared.contains(cd.as_str()))
        .map(|(cd, e)| format!("{cd} {}", e.employee_name.clone().unwrap_or_default()))
        .collect();
    visma_only.sort();
    Ok(Report { company: company_uuid.to_string(), rows, visma_only, repairs: 0 })
}

pub async fn reconcile(ctx: &Ctx, args: &ReconcileArgs) -> anyhow::Result<Report> {
    let bar = crate::output::progress(None, "reconcile");
    bar.set_message("reading Gusto and Visma");
    let report = compare(ctx, &args.company).await;
    bar.finish_and_clear();
    let mut report = report?;
    if args.repair {
        report.repairs = repair(ctx, &report).await?;
    }
    if crate::output::json_mode() {
        crate::output::json(&report)?;
    } else {
        print_report(&report, args.quiet);
    }
    Ok(report)
}

pub fn print_report(report: &Report, quiet: bool) {
    if !quiet {
        outln!("{:<28} {:<11} {:<8} detail", "employee", "visma no.", "state");
        for r in &report.rows {
            let detail = if r.changes.is_empty() {
                r.detail.clone()
            } else {
                r.changes
                    .iter()
                    .map(|(f, from, to)| format!("{f}: {from:?} -> {to:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            outln!("{:<28} {:<11} {:<8} {detail}", truncate(&r.name, 28), r.employee_cd, r.state);
        }
        outln!();
    } else {
        for r in report.rows.iter().filter(|r| r.state != "in_sync") {
            let detail = if r.changes.is_empty() {
                r.detail.clone()
            } else {
                r.changes
                    .iter()
                    .map(|(f, from, to)| format!("{f}: {from:?} -> {to:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            outln!("  {:<28} {:<11} {:<8} {detail}", truncate(&r.name, 28), r.employee_cd, r.state);
        }
    }
    // Per office: Gusto's people against what Visma holds for them.
    let mut offices: std::collections::BTreeMap<&str, [usize; 5]> = Default::default();
    for r in &report.rows {
        let o = offices.entry(r.office.as_str()).or_default();
        o[0] += 1;
        match r.state {
            "in_sync" => o[1] += 1,
            "drift" => o[2] += 1,
            "missing" => o[3] += 1,
            _ => o[4] += 1,
        }
    }
    outln!(
        "{:<14} {:>6} {:>8} {:>6} {:>8} {:>7}",
        "office",
        "gusto",
        "in sync",
        "drift",
        "missing",
        "parked"
    );
    let mut total = [0usize; 5];
    for (office, c) in &offices {
        outln!("{:<14} {:>6} {:>8} {:>6} {:>8} {:>7}", office, c[0], c[1], c[2], c[3], c[4]);
        for i in 0..5 {
            total[i] += c[i];
        }
    }
    outln!("{:<14} {:>6} {:>8} {:>6} {:>8} {:>7}", "total", total[0], total[1], total[2], total[3], total[4]);
    if report.repairs > 0 {
        outln!("repairs emitted: {}", report.repairs);
    }
    if !report.visma_only.is_empty() {
        outln!(
            "Visma employees with no Gusto employee (not compared, left alone): {}",
            report.visma_only.len()
        );
        if !quiet || report.visma_only.len() <= 10 {
            for v in &report.visma_only {
                outln!("  {v}");
            }
        }
    }
    outln!("in sync: {}/{}", report.in_sync_count(), report.rows.len());
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// For each drifted or missing employee: when our last snapshot is behind Gusto (a
/// missed webhook), queue a re-hydration; when it is current (Visma was edited), clear
/// the writer's idempotency hash and re-deliver the last command so the writer re-reads
/// Visma and writes the difference. Each repair is audited.
pub async fn repair(ctx: &Ctx, report: &Report) -> anyhow::Result<usize> {
    let mut n = 0;
    let run = uuid::Uuid::new_v4().simple().to_string();
    for r in report.rows.iter().filter(|r| r.state == "drift" || r.state == "missing") {
        let subject = ctx.topo.visma_command(&report.company, &r.employee_uuid);
        let last = mlc_bus::last_on_subject::<VismaCommand>(
            &ctx.js,
            &ctx.topo.stream(mlc_bus::StreamKind::VismaCommands),
            &subject,
        )
        .await?;
        // The pipeline is behind Gusto when its last command does not already say what
        // Gusto says now: a webhook was missed.
        let behind = match (&last, &r.expected) {
            (Some(l), Some(expected)) => {
                let mut said = l.message.fields.clone().unwrap_or_default();
                said.employee_cd = expected.employee_cd.clone();
                if l.message.kind() == mlc_proto::v1::CommandKind::Deactivate {
                    said.status = mlc_proto::v1::VismaStatus::Inactive as i32;
                }
                !mlc_domain::diff_fields(&said, expected).is_empty()
            }
            _ => true,
        };
        let how = if behind {
            let ev = GustoEvent {
                event_uuid: format!("reconcile-{run}-{}", r.employee_uuid),
                event_type: "employee.reconcile".into(),
                company_uuid: report.company.clone(),
                entity_type: "Employee".into(),
                entity_uuid: r.employee_uuid.clone(),
                timestamp: chrono::Utc::now().timestamp(),
                received_at_ms: mlc_bus::now_ms(),
                source: EventSource::Backfill as i32,
                ..Default::default()
            };
            ctx.publisher
                .publish(&ctx.topo.gusto_event(&report.company, "Employee"), &ev.event_uuid, &ev)
                .await?;
            "rehydrate"
        } else if let Some(l) = last {
            if let Some(mut link) = ctx.store.link(&report.company, &r.employee_uuid).await? {
                link.last_command_hash = None;
                ctx.store.put_link(&link).await?;
            }
            ctx.publisher
                .publish_raw(
                    &subject,
                    &format!("reconcile-{run}-{}", r.employee_uuid),
                    prost::Message::encode_to_vec(&l.message).into(),
                    async_nats::HeaderMap::new(),
                )
                .await?;
            "reapply"
        } else {
            continue;
        };
        ctx.store
            .append_audit(
                &AuditEntry::new(format!("repair:{run}:{}", r.employee_uuid), AuditKind::ReconcileRepair)
                    .for_company(&report.company)
                    .for_employee(&r.employee_uuid)
                    .with_detail(serde_json::json!({"how": how, "state": r.state,
                        "fields": r.changes.iter().map(|c| c.0.clone()).collect::<Vec<_>>()})),
            )
            .await?;
        n += 1;
    }
    Ok(n)
}
