//! Connecting a company: `mlc company connect` (the browser's OAuth consent) and
//! `mlc company add --code` (for scripts), which share one rule: every precondition is
//! checked before Gusto's single-use code is touched, so a missing key or a typo in the
//! mapping never costs the Gusto admin a second consent.
//!
//! `connect` creates a random `state`, subscribes to `<p>.oauth.callback.<state>`, prints
//! the authorize URL and waits. The gateway's `GET /oauth/callback` relays the code there
//! (the gateway holds no key and no store); the first message is taken, the subscription
//! dropped (single use), the code exchanged, grant and company stored, and the outcome sent
//! back as the page text the admin sees.

use crate::ctx;
use anyhow::{bail, Context as _};
use clap::Args;
use futures::StreamExt as _;
use gusto::GrantId;
use mlc_config::Config;
use mlc_gateway::oauth::{callback_subject, CallbackReply, CallbackRequest};
use mlc_store::{Company, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ConnectArgs {
    /// The company's display name in the connector.
    #[arg(long)]
    pub name: String,
    /// A key of visma.tenants in the configuration.
    #[arg(long)]
    pub visma_tenant: String,
    /// The company's mapping file (checked before anything is sent to Gusto).
    #[arg(long)]
    pub mapping: PathBuf,
    /// Defaults to gusto.redirect_uri (the gateway's /oauth/callback).
    #[arg(long)]
    pub redirect_uri: Option<String>,
    /// How long to wait for the admin's consent.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Create Visma employees without the first-connect review (only for a Visma
    /// company that holds none of these people yet).
    #[arg(long)]
    pub skip_review: bool,
    /// Re-authorising a known company (the console's button): a consent given for another
    /// company is refused instead of connecting that one under this name.
    #[arg(skip)]
    pub expect_company: Option<String>,
}

/// What a connect needs, all checked before the code is used.
pub struct Ready {
    pub store: Arc<Store>,
    pub mapping_path: PathBuf,
    pub revision: String,
}

/// Checks the encryption key, the Gusto application, the store, the Visma tenant and the
/// mapping file, in that order, and fails on the first that is missing or wrong.
pub async fn preconditions(cfg: &Config, visma_tenant: &str, mapping: &Path) -> anyhow::Result<Ready> {
    if cfg.store.encryption_key.is_none() {
        bail!(
            "config key `store.encryption_key` (env MLC_STORE_ENCRYPTION_KEY) is not set: the Gusto grant \
             could not be stored. `mlc config gen-key` makes one. Nothing was sent to Gusto."
        );
    }
    if cfg.gusto.client_id.trim().is_empty() {
        bail!("config key `gusto.client_id` (env MLC_GUSTO_CLIENT_ID) is not set");
    }
    if cfg.gusto.client_secret.is_none() {
        bail!("config key `gusto.client_secret` (env MLC_GUSTO_CLIENT_SECRET) is not set");
    }
    let store = Arc::new(ctx::open_store(cfg).await?);
    let companies = store.companies().await.context("reading the store (store.url)")?;
    // Two companies on one Visma tenant share its employee numbers and records.
    let sharing: Vec<String> = companies
        .iter()
        .filter(|c| c.visma_tenant == visma_tenant)
        .map(|c| format!("{} ({})", c.name, c.company_uuid))
        .collect();
    if !sharing.is_empty() {
        eprintln!(
            "note: Visma tenant {visma_tenant:?} is already linked to {}: fine when re-authorising that \
             company; two different companies on one Visma tenant share its employee records",
            sharing.join(", ")
        );
    }
    if !cfg.visma.tenants.contains_key(visma_tenant) {
        let known: Vec<&str> = cfg.visma.tenants.keys().map(String::as_str).collect();
        bail!(
            "no Visma tenant {visma_tenant:?} under visma.tenants in the configuration (known: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    }
    let text = std::fs::read_to_string(mapping)
        .with_context(|| format!("reading mapping file {}", mapping.display()))?;
    let parsed = mlc_domain::Mapping::from_toml_str(&text, &mapping.display().to_string())?;
    let mapping_path = std::fs::canonicalize(mapping)
        .with_context(|| format!("resolving mapping file {}", mapping.display()))?;
    Ok(Ready { store, mapping_path, revision: parsed.revision().to_string() })
}

/// The company a fresh token belongs to, from Gusto's `GET /v1/token_info`.
async fn company_of(cfg: &Config, tokens: &gusto::TokenResponse) -> anyhow::Result<String> {
    let probe = ctx::gusto_client_with(cfg, Arc::new(gusto::MemoryTokenStore::new()))?;
    let grant = GrantId("connect-probe".into());
    probe.tokens().install(&grant, tokens).await?;
    let info = probe.token_info(&grant).await.context("asking Gusto which company was authorised")?;
    info.resource
        .filter(|r| r.kind == "Company")
        .and_then(|r| r.uuid)
        .context("Gusto's token_info names no company for this grant")
}

/// Stores the grant (encrypted) and the company row; keeps pause and review state of a
/// company connected before.
pub async fn store_company(
    cfg: &Config,
    ready: &Ready,
    company: &str,
    name: &str,
    tokens: &gusto::TokenResponse,
    visma_tenant: &str,
    skip_review: bool,
) -> anyhow::Result<()> {
    let store = &ready.store;
    let grant = GrantId(format!("grant-{company}"));
    let gusto = ctx::gusto_client(cfg, store.clone())?;
    let grants = mlc_runtime::GrantStore::for_company(store.clone(), company);
    let tm = gusto::TokenManager::new(
        Arc::new(grants),
        gusto.tokens().oauth().clone(),
        gusto::TokenManagerConfig::default(),
    );
    tm.install(&grant, tokens).await?;
    let existing = store.company(company).await?;
    store
        .put_company(&Company {
            company_uuid: company.to_string(),
            name: name.to_string(),
            grant_id: grant.0.clone(),
            visma_tenant: visma_tenant.to_string(),
            mapping_path: ready.mapping_path.display().to_string(),
            paused: existing.as_ref().is_some_and(|c| c.paused),
            first_connect_applied: skip_review || existing.as_ref().is_some_and(|c| c.first_connect_applied),
            last_event_uuid: existing.and_then(|c| c.last_event_uuid),
            created_at: mlc_store::now_ms(),
        })
        .await?;
    Ok(())
}

/// `mlc company add --code`: the scripted path.
#[allow(clippy::too_many_arguments)]
pub async fn add_with_code(
    cfg: &Config,
    company: &str,
    name: &str,
    code: &str,
    redirect_uri: Option<String>,
    visma_tenant: &str,
    mapping: &Path,
    skip_review: bool,
) -> anyhow::Result<()> {
    let ready = preconditions(cfg, visma_tenant, mapping).await?;
    let gusto = ctx::gusto_client(cfg, ready.store.clone())?;
    let redirect = redirect_uri.unwrap_or_else(|| cfg.gusto.redirect_uri.clone());
    let tokens = gusto
        .exchange_code_raw(code, &redirect)
        .await
        .context("exchanging the Gusto code (codes are single use and live 10 minutes)")?;
    store_company(cfg, &ready, company, name, &tokens, visma_tenant, skip_review).await?;
    outln!("company {company} added (mapping revision {})", ready.revision);
    Ok(())
}

/// A random state: 32 url-safe characters (two v4 uuids' worth of randomness).
fn new_state() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// A connect waiting for the admin's consent: the authorize URL is ready to open.
pub struct Pending {
    cfg: Config,
    ready: Ready,
    args: ConnectArgs,
    redirect: String,
    client: async_nats::Client,
    sub: async_nats::Subscriber,
    pub authorize_url: String,
}

/// Checks every precondition, creates the state and listens for its callback.
pub async fn begin(cfg: Config, args: ConnectArgs) -> anyhow::Result<Pending> {
    let ready = preconditions(&cfg, &args.visma_tenant, &args.mapping).await?;
    let redirect = args.redirect_uri.clone().unwrap_or_else(|| cfg.gusto.redirect_uri.clone());
    let gusto = ctx::gusto_client(&cfg, ready.store.clone())?;
    let state = new_state();
    let authorize_url = gusto.tokens().oauth().authorize_url(&redirect, &state)?.to_string();
    let client = mlc_bus::connect_now(&cfg.nats, "mlc-connect").await?;
    let topo = ctx::topology(&cfg)?;
    let sub = client.subscribe(callback_subject(&topo, &state)).await?;
    client.flush().await.context("subscribing for the OAuth callback")?;
    Ok(Pending { cfg, ready, args, redirect, client, sub, authorize_url })
}

impl Pending {
    /// Takes the first callback (single use), finishes the connect and answers the page.
    /// Returns "connected: NAME (uuid)".
    pub async fn wait(mut self) -> anyhow::Result<String> {
        let secs = self.args.timeout_secs;
        let msg = match tokio::time::timeout(Duration::from_secs(secs), self.sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => bail!("the NATS subscription ended before the callback arrived"),
            Err(_) => bail!("no callback within {secs} s; the link is now void, run connect again"),
        };
        // Single use: nobody else can answer for this state from here on.
        let _ = self.sub.unsubscribe().await;
        let outcome = finish(&self.cfg, &self.ready, &self.args, &self.redirect, &msg.payload).await;
        let reply = match &outcome {
            Ok(msg) => CallbackReply { ok: true, message: msg.clone() },
            Err(e) => CallbackReply { ok: false, message: mlc_telemetry::redact(&format!("{e:#}")) },
        };
        if let Some(to) = msg.reply {
            self.client.publish(to, serde_json::to_vec(&reply)?.into()).await?;
            self.client.flush().await?;
        }
        outcome
    }

    pub fn revision(&self) -> &str {
        &self.ready.revision
    }
}

/// `mlc company connect`.
pub async fn connect(cfg: Config, args: ConnectArgs) -> anyhow::Result<()> {
    let timeout = args.timeout_secs;
    let pending = begin(cfg, args).await?;
    outln!("Open this URL as the company's Gusto admin and press Allow:");
    outln!("{}", pending.authorize_url);
    eprintln!(
        "waiting up to {timeout} s for Gusto to redirect to {} (the gateway must serve it) ...",
        pending.redirect
    );
    let revision = pending.revision().to_string();
    let message = pending.wait().await?;
    outln!("{message} (mapping revision {revision})");
    Ok(())
}

async fn finish(
    cfg: &Config,
    ready: &Ready,
    args: &ConnectArgs,
    redirect: &str,
    payload: &[u8],
) -> anyhow::Result<String> {
    let req: CallbackRequest =
        serde_json::from_slice(payload).context("unreadable callback from the gateway")?;
    if let Some(err) = req.error {
        bail!("Gusto refused: {err}{}", req.error_description.map(|d| format!(" ({d})")).unwrap_or_default());
    }
    let code = req.code.context("the callback carries no code")?;
    let gusto = ctx::gusto_client(cfg, ready.store.clone())?;
    let tokens = gusto.exchange_code_raw(&code, redirect).await.context("exchanging the Gusto code")?;
    let company = company_of(cfg, &tokens).await?;
    if let Some(expected) = args.expect_company.as_deref().filter(|e| *e != company) {
        bail!(
            "Gusto authorised company {company}, but this link re-authorises {} ({expected}); nothing was stored",
            args.name
        );
    }
    store_company(cfg, ready, &company, &args.name, &tokens, &args.visma_tenant, args.skip_review).await?;
    Ok(format!("connected: {} ({company})", args.name))
}
