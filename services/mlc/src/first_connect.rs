//! `mlc match`: the first-connect review.
//!
//! `mlc match --company C` reads both systems, proposes links ([`crate::matching`]), prints
//! them and writes the review file; the operator writes `yes` in the `approve` column of
//! the rows they checked; `mlc match --apply FILE` stores those links (origin `matched`) and
//! marks the company's first connect applied. Until then the writer creates no Visma
//! employee for the company: its commands wait.
//!
//! The file is CSV because the review is a table: HR opens it in a spreadsheet, sorts by
//! confidence, filters on the suggestion, and saves it back; each record is one line, so an
//! error can name the line the reviewer sees, and a change shows as one line in a diff.

use crate::ctx::Ctx;
use crate::matching::{self, ApplyContext, GustoPerson, Proposal, ReviewRow, Suggestion, VismaPerson};
use anyhow::Context as _;
use clap::Args;
use gusto::GrantId;
use mlc_store::{AuditEntry, AuditKind};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct MatchArgs {
    /// The company whose Gusto employees are matched against its Visma tenant.
    #[arg(long, required_unless_present = "apply")]
    pub company: Option<String>,
    /// Where the review file (CSV) goes; default `match-<company>.csv`.
    #[arg(long, conflicts_with = "apply")]
    pub out: Option<PathBuf>,
    /// Store the links approved (`approve` = yes) in a reviewed file and end the review.
    #[arg(long, value_name = "FILE")]
    pub apply: Option<PathBuf>,
    /// Print only the rows that need a look (review, create, keep), not the clear links.
    #[arg(long)]
    pub quiet: bool,
}

/// What both systems hold for one company, minus what is linked already.
pub struct People {
    pub company: mlc_store::Company,
    pub gusto: Vec<GustoPerson>,
    pub visma: Vec<VismaPerson>,
    /// Gusto uuid -> Visma number.
    pub links: HashMap<String, String>,
    pub prefix: String,
}

impl People {
    /// Reads Gusto's paged employee list (through the company's rate budget) and Visma's
    /// paged employee list.
    pub async fn load(ctx: &Ctx, company_uuid: &str) -> anyhow::Result<People> {
        let company = ctx.company(company_uuid).await?;
        let text = std::fs::read_to_string(&company.mapping_path)
            .with_context(|| format!("reading mapping {}", company.mapping_path))?;
        let mapping = mlc_domain::Mapping::from_toml_str(&text, &company.mapping_path)?;
        let rule = mapping.employee_cd_rule();
        let gusto = ctx.gusto().await?;
        let employees = gusto
            .list_all_employees(&GrantId(company.grant_id.clone()), company_uuid, 100)
            .await
            .context("listing Gusto employees")?;
        let gusto = employees
            .iter()
            .map(|e| {
                let cd =
                    mlc_domain::employee_cd(&e.uuid, e.employee_code.as_deref().unwrap_or(""), rule).ok();
                GustoPerson::from_api(e, cd)
            })
            .collect();
        let visma = ctx
            .visma(&company.visma_tenant)?
            .list_all_employees(None)
            .await
            .context("listing Visma employees")?
            .iter()
            .filter_map(VismaPerson::from_api)
            .collect();
        let links = ctx
            .store
            .links(company_uuid)
            .await?
            .into_iter()
            .map(|l| (l.employee_uuid, l.employee_cd))
            .collect();
        Ok(People { company, gusto, visma, links, prefix: rule.prefix().to_string() })
    }

    /// Proposals for the people not linked yet.
    pub fn propose(&self) -> Vec<Proposal> {
        let linked_cds: HashSet<&String> = self.links.values().collect();
        let gusto: Vec<GustoPerson> =
            self.gusto.iter().filter(|g| !self.links.contains_key(&g.uuid)).cloned().collect();
        let visma: Vec<VismaPerson> =
            self.visma.iter().filter(|v| !linked_cds.contains(&v.employee_cd)).cloned().collect();
        matching::propose(&gusto, &visma, &self.prefix)
    }
}

/// Counts per suggestion, in table order.
pub fn counts(proposals: &[Proposal]) -> [(Suggestion, usize); 4] {
    [Suggestion::Link, Suggestion::Review, Suggestion::Create, Suggestion::Keep]
        .map(|s| (s, proposals.iter().filter(|p| p.suggestion == s).count()))
}

pub fn print_table(proposals: &[Proposal], quiet: bool) {
    outln!(
        "{:<7} {:>4}  {:<26} {:<24} {:<8} {:<24} reason",
        "suggest",
        "conf",
        "criteria",
        "gusto employee",
        "visma",
        "visma employee"
    );
    for p in proposals.iter().filter(|p| !quiet || p.suggestion != Suggestion::Link) {
        let conf =
            if p.gusto.is_some() && p.visma.is_some() { format!("{:.2}", p.confidence) } else { "-".into() };
        outln!(
            "{:<7} {:>4}  {:<26} {:<24} {:<8} {:<24} {}",
            p.suggestion.as_str(),
            conf,
            cut(&p.criteria_text(), 26),
            cut(&p.gusto.as_ref().map(GustoPerson::name).unwrap_or_else(|| "-".into()), 24),
            p.visma.as_ref().map(|v| v.employee_cd.as_str()).unwrap_or("-"),
            cut(&p.visma.as_ref().map(VismaPerson::name).unwrap_or_else(|| "-".into()), 24),
            p.reason
        );
    }
    let c = counts(proposals);
    outln!(
        "{} to link (two criteria), {} to review, {} new (the writer creates them), {} only in Visma (left untouched)",
        c[0].1, c[1].1, c[2].1, c[3].1
    );
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// `mlc match --company C`: proposes, prints, writes the review file.
pub async fn propose(ctx: &Ctx, company: &str, out: &Path, quiet: bool) -> anyhow::Result<Vec<Proposal>> {
    let json = crate::output::json_mode();
    let people = load_with_progress(ctx, company).await?;
    let proposals = people.propose();
    if !json {
        print_table(&proposals, quiet);
        if !people.links.is_empty() {
            outln!("{} Gusto employees are linked already and not proposed again", people.links.len());
        }
    }
    let rows: Vec<ReviewRow> = proposals.iter().map(|p| ReviewRow::from_proposal(p, company)).collect();
    matching::write_review(out, &rows)?;
    if json {
        let c = counts(&proposals);
        crate::output::json(&serde_json::json!({
            "company": company,
            "review_file": out,
            "counts": { "link": c[0].1, "review": c[1].1, "create": c[2].1, "keep": c[3].1 },
            "already_linked": people.links.len(),
            "rows": rows,
        }))?;
    } else {
        outln!(
            "review file {}: write yes in the approve column of each row to link, then `mlc match --apply {}`",
            out.display(),
            out.display()
        );
    }
    Ok(proposals)
}

/// [`People::load`] under a spinner: both systems' paged lists take seconds for thousands.
async fn load_with_progress(ctx: &Ctx, company: &str) -> anyhow::Result<People> {
    let bar = crate::output::progress(None, "match");
    bar.set_message("reading Gusto's and Visma's employee lists");
    let people = People::load(ctx, company).await;
    bar.finish_and_clear();
    people
}

/// The outcome of applying a review file.
#[derive(Debug)]
pub struct Applied {
    pub company: String,
    pub linked: usize,
    pub already: usize,
    /// Gusto employees without a link: the writer creates them.
    pub to_create: usize,
    /// Visma employees without a link (strangers, and proposals not approved), by number
    /// and name: never touched.
    pub untouched: Vec<(String, String)>,
    /// Rows suggested for review that were not approved.
    pub left_for_review: Vec<String>,
}

/// `mlc match --apply FILE`: validates every line against both systems and the stored
/// links, then stores the approved links and ends the review. Nothing is written when any
/// line is wrong.
pub async fn apply(ctx: &Ctx, path: &Path) -> anyhow::Result<Applied> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
    let rows = matching::read_review(&shown, &text)?;
    let company = rows
        .iter()
        .map(|(_, r)| r.company.trim())
        .find(|c| !c.is_empty())
        .with_context(|| format!("{shown}: no row names a company"))?
        .to_string();
    let people = load_with_progress(ctx, &company).await?;
    let check = ApplyContext {
        company: company.clone(),
        gusto_uuids: people.gusto.iter().map(|g| g.uuid.clone()).collect(),
        visma_cds: people.visma.iter().map(|v| v.employee_cd.clone()).collect(),
        links: people.links.clone(),
    };
    let approved = matching::validate(&shown, &rows, &check)?;
    let tenant = people.company.visma_tenant.clone();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut linked = 0;
    for a in approved.iter().filter(|a| !a.existing) {
        ctx.store
            .put_link(&mlc_store::EmployeeLink {
                company: company.clone(),
                employee_uuid: a.gusto_uuid.clone(),
                visma_tenant: tenant.clone(),
                employee_cd: a.visma_cd.clone(),
                origin: "matched".into(),
                last_command_hash: None,
                last_command_seq: None,
                updated_at: mlc_store::now_ms(),
            })
            .await
            .with_context(|| format!("{shown}:{}: storing the link", a.line))?;
        ctx.store
            .append_audit(
                &AuditEntry::new(format!("match:{run}:{}", a.gusto_uuid), AuditKind::FirstConnectLink)
                    .for_company(&company)
                    .for_employee(&a.gusto_uuid)
                    .with_detail(
                        serde_json::json!({"employee_cd": a.visma_cd, "file": shown, "line": a.line}),
                    ),
            )
            .await?;
        linked += 1;
    }
    ctx.store.set_first_connect_applied(&company, true).await?;
    let linked_g: HashSet<&str> = approved
        .iter()
        .map(|a| a.gusto_uuid.as_str())
        .chain(people.links.keys().map(String::as_str))
        .collect();
    let linked_v: HashSet<&str> = approved
        .iter()
        .map(|a| a.visma_cd.as_str())
        .chain(people.links.values().map(String::as_str))
        .collect();
    let left_for_review = rows
        .iter()
        .filter(|(_, r)| r.suggestion == Suggestion::Review.as_str() && !r.approved())
        .map(|(line, r)| {
            format!("line {line}: {} ~ {} {} ({})", r.gusto_name, r.visma_cd, r.visma_name, r.reason)
        })
        .collect();
    let applied = Applied {
        company: company.clone(),
        linked,
        already: approved.len() - linked,
        to_create: people.gusto.iter().filter(|g| !linked_g.contains(g.uuid.as_str())).count(),
        untouched: people
            .visma
            .iter()
            .filter(|v| !linked_v.contains(v.employee_cd.as_str()))
            .map(|v| (v.employee_cd.clone(), v.name()))
            .collect(),
        left_for_review,
    };
    ctx.store
        .append_audit(
            &AuditEntry::new(format!("match:{run}:applied"), AuditKind::FirstConnectApplied)
                .for_company(company)
                .with_detail(serde_json::json!({"file": shown, "linked": applied.linked,
                    "already": applied.already, "to_create": applied.to_create,
                    "untouched": applied.untouched.len()})),
        )
        .await?;
    Ok(applied)
}

pub fn print_applied(a: &Applied) {
    outln!(
        "first connect of {} applied: {} link(s) stored{}; {} Gusto employee(s) will be created by the writer",
        a.company,
        a.linked,
        if a.already > 0 { format!(" ({} already stored)", a.already) } else { String::new() },
        a.to_create
    );
    if !a.left_for_review.is_empty() {
        outln!("not approved, so not linked ({}):", a.left_for_review.len());
        for l in &a.left_for_review {
            outln!("  {l}");
        }
    }
    outln!("Visma employees not linked to anyone in Gusto, left untouched ({}):", a.untouched.len());
    for (cd, name) in &a.untouched {
        outln!("  {cd:<8} {name}");
    }
}

pub async fn run(ctx: &Ctx, args: &MatchArgs) -> anyhow::Result<()> {
    match (&args.apply, &args.company) {
        (Some(file), _) => {
            let a = apply(ctx, file).await?;
            if crate::output::json_mode() {
                crate::output::json(&serde_json::json!({
                    "company": a.company,
                    "linked": a.linked,
                    "already": a.already,
                    "to_create": a.to_create,
                    "untouched": a.untouched.iter().map(|(cd, name)| serde_json::json!({"employee_cd": cd, "name": name})).collect::<Vec<_>>(),
                    "left_for_review": a.left_for_review,
                }))?;
            } else {
                print_applied(&a);
            }
        }
        (None, Some(company)) => {
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("match-{company}.csv")));
            propose(ctx, company, &out, args.quiet).await?;
        }
        (None, None) => return Err(crate::exit::usage("give --company C to propose, or --apply FILE")),
    }
    Ok(())
}

/// What the demo's operator does after reading the table: approves every row with two
/// criteria and no competitor and, after a closer look at the others, the review rows
/// that have no rival (one criterion, but nobody else it could be). Rows with a rival stay
/// unapproved: a person has to decide those. Returns (links, reviews) approved.
pub fn approve_links(path: &Path) -> anyhow::Result<(usize, usize)> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)?;
    let mut rows: Vec<ReviewRow> =
        matching::read_review(&shown, &text)?.into_iter().map(|(_, r)| r).collect();
    let (mut links, mut reviews) = (0, 0);
    for r in rows.iter_mut() {
        if r.suggestion == Suggestion::Link.as_str() {
            r.approve = "yes".into();
            links += 1;
        } else if r.suggestion == Suggestion::Review.as_str()
            && !r.reason.contains("ambiguous")
            && !r.reason.contains("as close")
        {
            r.approve = "yes".into();
            reviews += 1;
        }
    }
    matching::write_review(path, &rows)?;
    Ok((links, reviews))
}
