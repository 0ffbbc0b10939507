//! `mlc check`: the preflight. Works before any company exists (NATS, store, Gusto
//! application, every configured Visma tenant, redirect and webhook endpoints as far as they
//! can be judged from here) and, given a mapping (`--mapping F --visma-tenant T`) or a
//! company (`--company C`), checks that every Visma target the mapping names exists.
//!
//! One line per check, `--json` for machines, exit 1 when any check fails. A `warn` is
//! something this command cannot prove either way (e.g. Visma's API lists no employee
//! classes or calendars, so those are only confirmed when an existing employee uses them).

use crate::ctx;
use anyhow::Context as _;
use clap::Args;
use gusto::GrantId;
use mlc_config::Config;
use mlc_domain::Mapping;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct CheckArgs {
    /// Check this connected company: its grant, its Visma tenant and its mapping's targets.
    #[arg(long, conflicts_with = "mapping")]
    pub company: Option<String>,
    /// Check this mapping file's targets against `--visma-tenant` (before connecting).
    #[arg(long, requires = "visma_tenant")]
    pub mapping: Option<PathBuf>,
    /// A key of visma.tenants (with --mapping; alone it limits the tenant checks to it).
    #[arg(long)]
    pub visma_tenant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub check: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Default)]
pub struct Report {
    pub lines: Vec<Line>,
    /// Collect only: print nothing as the checks are decided.
    quiet: bool,
}

impl Report {
    fn push(&mut self, status: Status, check: impl Into<String>, detail: impl Into<String>) {
        let line = Line { check: check.into(), status, detail: detail.into() };
        if !self.quiet {
            let tag = match status {
                Status::Ok => " ok ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            if line.detail.is_empty() {
                outln!("[{tag}] {}", line.check);
            } else {
                outln!("[{tag}] {}: {}", line.check, line.detail);
            }
        }
        self.lines.push(line);
    }
    fn ok(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Ok, check, detail)
    }
    fn fail(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Fail, check, detail)
    }
    fn warn(&mut self, check: impl Into<String>, detail: impl Into<String>) {
        self.push(Status::Warn, check, detail)
    }
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|l| l.status == Status::Fail)
    }
    /// "N checks: F failed, W warnings".
    pub fn summary(&self) -> String {
        let fails = self.lines.iter().filter(|l| l.status == Status::Fail).count();
        let warns = self.lines.iter().filter(|l| l.status == Status::Warn).count();
        format!("{} checks: {fails} failed, {warns} warnings", self.lines.len())
    }
}

pub async fn check(cfg: Config, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let r = collect(&cfg, &args, crate::output::json_mode()).await?;
    if crate::output::json_mode() {
        crate::output::json(&r.lines)?;
    } else {
        outln!("{}", r.summary());
    }
    Ok(if r.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Runs every check; prints each line as it is decided unless `quiet`.
pub async fn collect(cfg: &Config, args: &CheckArgs, quiet: bool) -> anyhow::Result<Report> {
    let cfg = cfg.clone();
    let mut r = Report { quiet, ..Default::default() };

    // Which company, and so which tenant and mapping; an unknown company is an error.
    let store = match ctx::open_store(&cfg).await {
        Ok(s) => match s.companies().await {
            Ok(list) => {
                r.ok("store", format!("{} companies", list.len()));
                Some(Arc::new(s))
            }
            Err(e) => {
                r.fail("store", format!("{e} (store.url)"));
                None
            }
        },
        Err(e) => {
            r.fail("store", format!("{e:#}"));
            None
        }
    };
    let company = match (&args.company, &store) {
        (Some(c), Some(s)) => Some(
            s.company(c)
                .await?
                .with_context(|| format!("unknown company {c}; `mlc company list` shows the known ones"))?,
        ),
        (Some(_), None) => {
            anyhow::bail!("cannot check a company without the store (see the store line above)")
        }
        _ => None,
    };
    if cfg.store.encryption_key.is_some() {
        r.ok("store.encryption_key", "set");
    } else {
        r.fail("store.encryption_key", "not set (MLC_STORE_ENCRYPTION_KEY); `mlc config gen-key` makes one");
    }

    match mlc_bus::connect_now(&cfg.nats, "mlc-check").await {
        Ok(_) => r.ok("NATS", mlc_bus::redact_url(&cfg.nats.url)),
        Err(e) => {
            r.fail("NATS", format!("{e} (nats.url, nats.user/password, token, nkey_seed, creds_file, tls_*)"))
        }
    }

    gusto_application(&cfg, store.clone(), &mut r).await;
    endpoints(&cfg, &mut r).await;

    // The Visma tenants: the company's, the one named, or all configured.
    let tenants: Vec<String> = match (&company, &args.visma_tenant) {
        (Some(c), _) => vec![c.visma_tenant.clone()],
        (None, Some(t)) => vec![t.clone()],
        (None, None) => cfg.visma.tenants.keys().cloned().collect(),
    };
    if tenants.is_empty() {
        r.warn("visma.tenants", "none configured; add [visma.tenants.NAME] before connecting a company");
    }
    let vismas = ctx::visma_clients(&cfg)?;
    let mut reachable = BTreeMap::new();
    for t in &tenants {
        let Some(v) = vismas.get(t) else {
            r.fail(format!("Visma tenant {t}"), "not under visma.tenants in the configuration");
            continue;
        };
        match v.list_departments().await {
            Ok(deps) => {
                let budget = v
                    .rate_limit()
                    .and_then(|rl| Some(format!("; rate budget {} of {} left", rl.remaining?, rl.limit?)))
                    .unwrap_or_default();
                r.ok(
                    format!("Visma tenant {t}"),
                    format!(
                        "token granted for the scopes the writer needs ({}) and read access ({} departments){budget}",
                        v.config().scopes.join(" "),
                        deps.len()
                    ),
                );
                reachable.insert(t.clone(), v.clone());
            }
            Err(e) => r.fail(
                format!("Visma tenant {t}"),
                format!("{e} (visma.tenants.{t}.client_id / client_secret / tenant_id)"),
            ),
        }
    }

    // The company's grant.
    if let (Some(c), Some(store)) = (&company, &store) {
        match ctx::gusto_client(&cfg, store.clone()) {
            Ok(g) => match g.token_info(&GrantId(c.grant_id.clone())).await {
                Ok(info) => {
                    r.ok(format!("Gusto grant of {}", c.name), format!("works (scope: {})", info.scope))
                }
                Err(e) => r.fail(
                    format!("Gusto grant of {}", c.name),
                    format!("{e}; reconnect with `mlc company connect`"),
                ),
            },
            Err(e) => r.fail(format!("Gusto grant of {}", c.name), format!("{e:#}")),
        }
    }

    // The mapping's targets.
    let mapping = match (&company, &args.mapping) {
        (Some(c), _) => Some((PathBuf::from(&c.mapping_path), c.visma_tenant.clone())),
        (None, Some(m)) => Some((m.clone(), args.visma_tenant.clone().unwrap_or_default())),
        _ => None,
    };
    if let Some((path, tenant)) = mapping {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading mapping file {}: {e}", path.display()))
            .and_then(|t| Ok(Mapping::from_toml_str(&t, &path.display().to_string())?));
        match parsed {
            Err(e) => r.fail("mapping", format!("{e:#}")),
            Ok(m) => {
                r.ok("mapping", format!("{} (revision {})", path.display(), m.revision()));
                match reachable.get(&tenant) {
                    Some(v) => mapping_targets(&m, v, &mut r).await,
                    None => r.fail(
                        "mapping targets",
                        format!("Visma tenant {tenant} is not reachable; nothing checked"),
                    ),
                }
            }
        }
    }

    Ok(r)
}

/// The application's client id and secret, proven by a system-token call; and the
/// webhook subscriptions Gusto holds for it.
async fn gusto_application(cfg: &Config, store: Option<Arc<mlc_store::Store>>, r: &mut Report) {
    if cfg.gusto.client_id.trim().is_empty() || cfg.gusto.client_secret.is_none() {
        r.fail("Gusto application", "gusto.client_id and gusto.client_secret must be set");
        return;
    }
    let client = match store {
        Some(s) => ctx::gusto_client(cfg, s),
        None => ctx::gusto_client_with(cfg, Arc::new(gusto::MemoryTokenStore::new())),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => return r.fail("Gusto application", format!("{e:#}")),
    };
    match client.list_webhook_subscriptions().await {
        Ok(subs) => {
            r.ok(
                "Gusto application",
                format!(
                    "client {} accepted at {} (API version {})",
                    cfg.gusto.client_id, cfg.gusto.base_url, cfg.gusto.api_version
                ),
            );
            let live: Vec<_> = subs.iter().filter(|s| s.status != "removed").collect();
            if live.is_empty() {
                r.warn(
                    "Gusto webhook subscription",
                    "none yet; `mlc subscribe --url https://<public host>/webhooks/gusto`",
                );
            }
            for s in live {
                let url = s.url.clone();
                if s.status == "verified" {
                    r.ok(format!("Gusto webhook subscription {}", s.uuid), format!("{url} verified"));
                } else {
                    r.fail(
                        format!("Gusto webhook subscription {}", s.uuid),
                        format!("{url} is {}; finish it with `mlc subscribe --verify {}`", s.status, s.uuid),
                    );
                }
            }
        }
        // A refused version is the version line's one clear error (below).
        Err(gusto::GustoError::InvalidApiVersion { .. }) => {}
        Err(e) => r.fail(
            "Gusto application",
            format!("{e} (gusto.client_id / gusto.client_secret / gusto.base_url)"),
        ),
    }
    // Issue 15: which version Gusto confirmed, deprecated (warning) or refused (406).
    match crate::gusto_version::version_line(&client) {
        (crate::gusto_version::Level::Ok, t) => r.ok("Gusto API version", t),
        (crate::gusto_version::Level::Warn, t) => r.warn("Gusto API version", t),
        (crate::gusto_version::Level::Fail, t) => r.fail("Gusto API version", t),
    }
}

/// The redirect URI and the gateway, as far as this host can tell.
async fn endpoints(cfg: &Config, r: &mut Report) {
    match reqwest::Url::parse(&cfg.gusto.redirect_uri) {
        Ok(u) if u.path() == "/oauth/callback" => r.ok(
            "gusto.redirect_uri",
            format!("{u} (the gateway's callback; must match the Gusto application)"),
        ),
        Ok(u) => r.warn(
            "gusto.redirect_uri",
            format!(
                "{u} is not a gateway /oauth/callback; `mlc company connect` needs the gateway to receive it"
            ),
        ),
        Err(e) => r.fail("gusto.redirect_uri", format!("not a URL: {e}")),
    }
    // Health is on the ops listener: the public port serves the webhook and the callback only.
    let health = format!("http://{}/healthz", cfg.gateway.ops_listen);
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build();
    match http {
        Ok(h) => match h.get(&health).send().await {
            Ok(resp) if resp.status().is_success() => r.ok("gateway", format!("answers at {health}")),
            Ok(resp) => r.warn("gateway", format!("{health} answered {}", resp.status())),
            Err(_) => r.warn(
                "gateway",
                format!("nothing answers at {health} (gateway.ops_listen) from here; webhooks and the OAuth callback need the gateway"),
            ),
        },
        Err(e) => r.warn("gateway", e.to_string()),
    }
}

/// One line per wanted id of `kind` (with the mapping entries that name it): ok when
/// Visma has it, a failure listing what Visma has otherwise.
fn exist_in_visma(
    r: &mut Report,
    kind: &str,
    wanted: &BTreeMap<String, Vec<String>>,
    have: &BTreeSet<String>,
) {
    for (id, users) in wanted {
        let what = format!("{kind} {id} ({})", users.join(", "));
        if have.contains(id) {
            r.ok(what, "exists in Visma");
        } else {
            let listed = have.iter().cloned().collect::<Vec<_>>().join(", ");
            r.fail(what, format!("missing in Visma (Visma has: {listed})"));
        }
    }
}

/// Every Visma id the mapping names: departments, branches, employee classes, the
/// calendar and the segment values.
async fn mapping_targets(m: &Mapping, v: &visma::VismaClient, r: &mut Report) {
    let (deps, branches) = match (v.list_departments().await, v.list_branches().await) {
        (Ok(d), Ok(b)) => (d, b),
        (Err(e), _) | (_, Err(e)) => return r.fail("mapping targets", format!("cannot read Visma: {e}")),
    };
    let dep_ids: BTreeSet<String> = deps.iter().filter_map(|d| d.department_id.clone()).collect();
    let branch_ids: BTreeSet<String> = branches.iter().filter_map(|b| b.number.clone()).collect();
    let has = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");

    let mut wanted_deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (from, to) in m.departments() {
        wanted_deps.entry(to.clone()).or_default().push(format!("Gusto {from:?}"));
    }
    if let Some(d) = &m.defaults().department {
        wanted_deps.entry(d.clone()).or_default().push("defaults.department".into());
    }
    exist_in_visma(r, "department", &wanted_deps, &dep_ids);

    let mut wanted_branches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (from, to) in m.locations() {
        wanted_branches.entry(to.branch.clone()).or_default().push(format!("Gusto {from:?}"));
    }
    if let Some(b) = &m.defaults().branch {
        wanted_branches.entry(b.clone()).or_default().push("defaults.branch".into());
    }
    exist_in_visma(r, "branch", &wanted_branches, &branch_ids);

    // Segment values, one dimension read per dimension.
    let mut dims: BTreeMap<String, Vec<(String, u32, String)>> = BTreeMap::new();
    for (from, to) in m.locations() {
        if let Some(s) = &to.segment {
            dims.entry(s.dimension.clone()).or_default().push((from.clone(), s.segment_id, s.value.clone()));
        }
    }
    for (dim, wanted) in dims {
        let found = match v.get_dimension(&dim).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                r.fail(format!("dimension {dim}"), "missing in Visma");
                continue;
            }
            Err(e) => {
                r.fail(format!("dimension {dim}"), format!("cannot read it: {e}"));
                continue;
            }
        };
        for (from, segment, value) in wanted {
            let values: BTreeSet<String> = found
                .segments
                .iter()
                .flatten()
                .filter(|s| s.segment_id == Some(segment as i32))
                .flat_map(|s| s.segment_values.iter().flatten())
                .filter_map(|v| v.value_id.clone())
                .collect();
            let what = format!("segment value {dim}/{segment} {value} (Gusto {from:?})");
            if values.contains(&value) {
                r.ok(what, "exists in Visma");
            } else {
                r.fail(what, format!("missing in Visma (segment {segment} has: {})", has(&values)));
            }
        }
    }

    // Classes and calendars: no Visma endpoint lists them; an employee using one proves it.
    let employees = match v.list_all_employees(None).await {
        Ok(e) => e,
        Err(e) => {
            return r.fail("employee classes and calendar", format!("cannot list Visma employees: {e}"))
        }
    };
    let used_classes: BTreeSet<String> =
        employees.iter().filter_map(|e| e.employee_class.as_ref().and_then(|c| c.id.clone())).collect();
    let used_calendars: BTreeSet<String> = employees.iter().filter_map(|e| e.calendar_id.clone()).collect();
    let mut wanted_classes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    wanted_classes
        .entry(m.defaults().employee_class.clone())
        .or_default()
        .push("defaults.employee_class".into());
    for (title, class) in &m.job_titles().classes {
        wanted_classes.entry(class.clone()).or_default().push(format!("title {title:?}"));
    }
    let unproven = "not used by any of the {n} Visma employees, and Visma's API lists no employee classes: \
                    make sure it exists (Visma: Employee classes), or the first write with it fails";
    for (id, users) in &wanted_classes {
        let what = format!("employee class {id} ({})", users.join(", "));
        if used_classes.contains(id) {
            r.ok(what, "used by an existing Visma employee");
        } else {
            r.warn(what, unproven.replace("{n}", &employees.len().to_string()));
        }
    }
    let cal = &m.defaults().calendar;
    if used_calendars.contains(cal) {
        r.ok(format!("calendar {cal}"), "used by an existing Visma employee");
    } else {
        r.warn(
            format!("calendar {cal}"),
            format!("not used by any of the {} Visma employees; Visma's API lists no calendars: make sure it exists", employees.len()),
        );
    }
}
