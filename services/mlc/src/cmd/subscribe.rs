//! `mlc subscribe`: the Gusto webhook subscription and its verification handshake.

use crate::ctx::{self, Ctx};
use anyhow::{bail, Context as _};
use clap::Args;
use mlc_config::Config;
use serde::Serialize;

#[derive(Args)]
pub struct SubscribeArgs {
    /// Public URL of the gateway's webhook endpoint, as Gusto reaches it.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Only finish the handshake of this existing subscription (its uuid) with the tokens
    /// the gateway received.
    #[arg(long, value_name = "UUID")]
    pub verify: Option<String>,
    /// How long to wait for Gusto's verification POST to reach the gateway.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub wait_secs: u64,
}

/// `mlc subscribe --json`.
#[derive(Serialize)]
pub struct Subscribed {
    pub subscription: String,
    pub verified: bool,
}

pub async fn subscribe(cfg: Config, args: SubscribeArgs) -> anyhow::Result<()> {
    if args.url.is_none() && args.verify.is_none() {
        return Err(crate::exit::usage(
            "give --url to create a subscription, or --verify UUID to finish one",
        ));
    }
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
    if crate::output::json_mode() {
        return crate::output::json(&Subscribed { subscription: uuid, verified: true });
    }
    outln!("webhook subscription {uuid} verified; the gateway now trusts its token");
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
