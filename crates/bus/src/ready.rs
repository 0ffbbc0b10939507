//! Readiness from the real dependencies: NATS connected, the stream the service works
//! present, and whatever else the service needs (the store) answering.

use mlc_telemetry::ReadyFlag;
use std::future::Future;
use std::time::Duration;

/// How long a probe may take before the dependency counts as down.
const PROBE: Duration = Duration::from_secs(2);

/// Keeps `ready` true only while NATS is connected, `stream` (if given) exists and
/// `probe` answers true within 2 s; checks every 500 ms, forever. The one readiness
/// watcher of every service.
pub async fn watch_ready<F, Fut>(nats: async_nats::Client, stream: Option<String>, probe: F, ready: ReadyFlag)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let js = async_nats::jetstream::new(nats.clone());
    loop {
        let mut ok = nats.connection_state() == async_nats::connection::State::Connected;
        if ok {
            if let Some(stream) = &stream {
                ok =
                    tokio::time::timeout(PROBE, js.get_stream_no_info(stream)).await.is_ok_and(|r| r.is_ok());
            }
        }
        if ok {
            ok = tokio::time::timeout(PROBE, probe()).await.unwrap_or(false);
        }
        ready.set(ok);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
