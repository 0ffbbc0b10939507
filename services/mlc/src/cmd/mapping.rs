//! `mlc mapping check F` (offline: the file alone) and `mlc mapping preview` (what Visma's
//! records would become under a mapping file, as a field diff against what Visma holds now;
//! reads Gusto and Visma, writes nothing).

use crate::ctx::Ctx;
use crate::reconcile;
use clap::Subcommand;
use mlc_config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum MappingCommand {
    /// Validates a mapping file offline: TOML syntax, schema, duplicate keys, the employee
    /// number rule's length; errors as file:line:column. (`mlc check --mapping F
    /// --visma-tenant T` then checks its targets exist in Visma.)
    ///
    /// Example: mlc mapping check schemas/examples/mapping.example.toml
    Check {
        /// The mapping file (TOML).
        file: PathBuf,
    },
    /// Shows what each Visma employee record would become under the mapping, as a field
    /// diff against Visma's current record. Writes nothing.
    ///
    /// Example: mlc mapping preview --company 7d1c0a52-... --all --mapping new.toml
    Preview {
        /// The company whose employees are previewed (its Gusto uuid).
        #[arg(long)]
        company: String,
        /// One Gusto employee uuid.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        employee: Option<String>,
        /// Every employee of the company.
        #[arg(long)]
        all: bool,
        /// Another mapping file than the company's (to try a change before making it).
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
}

pub async fn run(cfg: Option<Config>, cmd: MappingCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MappingCommand::Check { file } => Ok(check(&file)),
        MappingCommand::Preview { company, employee, all: _, mapping } => {
            let cfg = cfg.ok_or_else(|| anyhow::anyhow!("no configuration"))?;
            let ctx = crate::cmd::read_only(cfg, "mlc-mapping-preview").await?;
            preview(&ctx, &company, employee.as_deref(), mapping.as_deref(), crate::output::json_mode())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: reading mapping file {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match mlc_domain::Mapping::from_toml_str(&text, &file.display().to_string()) {
        Ok(m) if crate::output::json_mode() => {
            let doc = serde_json::json!({
                "file": file,
                "ok": true,
                "revision": m.revision(),
                "departments": m.departments().len(),
                "locations": m.locations().len(),
                "job_titles": m.job_titles().classes.len(),
            });
            match crate::output::json(&doc) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Ok(m) => {
            outln!(
                "{}: ok (revision {}): {} departments, {} locations, {} job titles, employee number {:?}",
                file.display(),
                m.revision(),
                m.departments().len(),
                m.locations().len(),
                m.job_titles().classes.len(),
                m.employee_cd_rule().strategy(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// What a mapping would do to each Visma record, counted: `mlc mapping preview`'s last
/// line and the console's preview say the same.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub same: usize,
    pub park: usize,
}

impl Summary {
    pub fn of(rows: &[reconcile::Row]) -> Summary {
        let mut s = Summary::default();
        for r in rows {
            match effect(r) {
                Effect::Create => s.create += 1,
                Effect::Update => s.update += 1,
                Effect::Park => s.park += 1,
                Effect::Unchanged => s.same += 1,
            }
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Summary { create, update, same, park } = self;
        write!(f, "{create} would be created, {update} updated, {same} unchanged, {park} parked; nothing was written")
    }
}

/// What the mapping would do to one Visma record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Create,
    Update,
    Unchanged,
    Park,
}

impl Effect {
    pub fn label(self) -> &'static str {
        match self {
            Effect::Create => "would create",
            Effect::Update => "would update",
            Effect::Unchanged => "unchanged",
            Effect::Park => "would park",
        }
    }
}

/// A reconcile row read as a preview: missing in Visma is a create, drift an update.
pub fn effect(r: &reconcile::Row) -> Effect {
    match r.state {
        "missing" => Effect::Create,
        "drift" => Effect::Update,
        "parked" => Effect::Park,
        _ => Effect::Unchanged,
    }
}

/// The fields the mapping would write, as (field, from, to): for a create every field
/// against an empty record, for an update the fields that differ.
pub fn changes(r: &reconcile::Row) -> Vec<(String, String, String)> {
    match (effect(r), &r.expected) {
        (Effect::Create, Some(f)) => {
            let empty = mlc_proto::v1::VismaEmployeeFields::default();
            mlc_domain::diff_fields(&empty, f)
                .into_iter()
                .map(|c| (c.field.to_string(), c.from, c.to))
                .collect()
        }
        (Effect::Update, _) => r.changes.clone(),
        _ => Vec::new(),
    }
}

async fn preview(
    ctx: &Ctx,
    company: &str,
    employee: Option<&str>,
    mapping: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<()> {
    let report = reconcile::compare_with(ctx, company, mapping, employee).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report.rows)?);
        return Ok(());
    }
    for r in &report.rows {
        let who = format!("{} ({}, {})", r.name, r.employee_uuid, r.office);
        match effect(r) {
            Effect::Create => {
                outln!("{who}: would create Visma employee {}", r.employee_cd);
                for (field, _, to) in changes(r) {
                    outln!("  + {field}: {to}");
                }
            }
            Effect::Update => {
                outln!("{who}: would update Visma employee {}", r.employee_cd);
                for (field, from, to) in changes(r) {
                    outln!("  - {field}: {from}\n  + {field}: {to}");
                }
            }
            Effect::Park => outln!("{who}: would park: {}", r.detail),
            Effect::Unchanged => outln!("{who}: Visma employee {} unchanged", r.employee_cd),
        }
    }
    outln!("preview of {} employee(s): {}", report.rows.len(), Summary::of(&report.rows));
    Ok(())
}
