//! `mlc company`: the companies the connector serves.

use crate::ctx;
use crate::exit;
use anyhow::bail;
use clap::Subcommand;
use mlc_config::Config;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum CompanyCommand {
    /// Connects a company through Gusto's consent page: checks every precondition, prints
    /// the authorize URL, waits for the gateway's /oauth/callback, stores the grant.
    ///
    /// Example: mlc company connect --name "Acme AS" --visma-tenant nordic --mapping mapping.toml
    Connect(crate::cmd::connect::ConnectArgs),
    /// Adds (or re-authorises) a company: exchanges its Gusto authorisation code, stores
    /// the grant encrypted, and links its Visma tenant and mapping file.
    ///
    /// Example: mlc company add --company 7d1c... --name "Acme AS" --code CODE --visma-tenant nordic --mapping mapping.toml
    Add {
        /// The company's Gusto uuid (as in the authorize redirect's `company_uuid`).
        #[arg(long)]
        company: String,
        /// The company's display name in the connector.
        #[arg(long)]
        name: String,
        /// The `code` Gusto's /oauth/authorize redirect returned (single use, short-lived).
        #[arg(long)]
        code: String,
        /// The redirect URI the code was issued for; defaults to gusto.redirect_uri.
        #[arg(long)]
        redirect_uri: Option<String>,
        /// A key of visma.tenants in the configuration.
        #[arg(long)]
        visma_tenant: String,
        /// The company's mapping file (validated before the code is spent).
        #[arg(long)]
        mapping: PathBuf,
        /// Create Visma employees without the first-connect review (only for a Visma
        /// company that holds none of these people yet).
        #[arg(long)]
        skip_review: bool,
    },
    /// Lists the companies with their grant state, pause flag, review state and tenant.
    ///
    /// Example: mlc company list --json
    List,
    /// Holds the company's work (events wait in JetStream, nothing is lost).
    ///
    /// Example: mlc company pause 7d1c0a52-...
    Pause {
        /// The company's Gusto uuid (`mlc company list`).
        company: String,
    },
    /// Lets a paused company's work flow again; its waiting events are processed in order.
    ///
    /// Example: mlc company resume 7d1c0a52-...
    Resume {
        /// The company's Gusto uuid (`mlc company list`).
        company: String,
    },
}

/// One row of `mlc company list --json`.
#[derive(Serialize)]
pub struct CompanyRow {
    pub company: String,
    pub name: String,
    pub paused: bool,
    /// `ok`, `needs_reauth` or `missing` (see `mlc status`).
    pub grant: String,
    /// `applied` or `awaiting_review`.
    pub first_connect: String,
    pub visma_tenant: String,
    pub mapping: String,
}

/// `mlc company pause|resume --json`.
#[derive(Serialize)]
struct Changed<'a> {
    company: &'a str,
    paused: bool,
}

pub async fn company(cfg: Config, cmd: CompanyCommand) -> anyhow::Result<()> {
    match cmd {
        CompanyCommand::Add { company, name, code, redirect_uri, visma_tenant, mapping, skip_review } => {
            return crate::cmd::connect::add_with_code(
                &cfg,
                &company,
                &name,
                &code,
                redirect_uri,
                &visma_tenant,
                &mapping,
                skip_review,
            )
            .await;
        }
        CompanyCommand::Connect(args) => return crate::cmd::connect::connect(cfg, args).await,
        _ => {}
    }
    let store = Arc::new(ctx::open_store(&cfg).await?);
    match cmd {
        CompanyCommand::Add { .. } | CompanyCommand::Connect(_) => unreachable!("handled above"),
        CompanyCommand::List => {
            let mut rows = Vec::new();
            for c in store.companies().await? {
                let grant = store.grant(&c.grant_id).await?;
                rows.push(CompanyRow {
                    grant: crate::status::grant_state(grant.as_ref()).to_string(),
                    first_connect: if c.first_connect_applied { "applied" } else { "awaiting_review" }.into(),
                    company: c.company_uuid,
                    name: c.name,
                    paused: c.paused,
                    visma_tenant: c.visma_tenant,
                    mapping: c.mapping_path,
                });
            }
            if crate::output::json_mode() {
                return crate::output::json(&rows);
            }
            outln!("{:<38} {:<24} {:<8} {:<14} {:<7} tenant", "company", "name", "paused", "grant", "review");
            for c in &rows {
                outln!(
                    "{:<38} {:<24} {:<8} {:<14} {:<7} {}",
                    c.company,
                    c.name,
                    c.paused,
                    crate::status::grant_label(&c.grant),
                    if c.first_connect == "applied" { "done" } else { "open" },
                    c.visma_tenant
                );
            }
            if rows.is_empty() {
                outln!("no companies yet; `mlc company connect` adds one");
            }
        }
        CompanyCommand::Pause { company } | CompanyCommand::Resume { company } if company.is_empty() => {
            return Err(exit::usage("a company uuid is required"));
        }
        CompanyCommand::Pause { company } => {
            if !store.set_company_paused(&company, true).await? {
                bail!("unknown company {company}; `mlc company list` shows the known ones");
            }
            if crate::output::json_mode() {
                return crate::output::json(&Changed { company: &company, paused: true });
            }
            outln!("company {company} paused; its events wait in JetStream");
        }
        CompanyCommand::Resume { company } => {
            if !store.set_company_paused(&company, false).await? {
                bail!("unknown company {company}; `mlc company list` shows the known ones");
            }
            if crate::output::json_mode() {
                return crate::output::json(&Changed { company: &company, paused: false });
            }
            outln!("company {company} resumed");
        }
    }
    Ok(())
}
