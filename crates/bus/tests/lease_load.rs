//! Leases that hold under load (issue 22): a replica holding both partitions of a
//! two-partition topology, in a process whose cores are kept busy by spinning threads
//! (twice as many as there are cores), keeps its leases and keeps its messages flowing.
//!
//! Short form 20 s with a 4 s lease TTL (renewals every second, given up at 2 s, so a
//! starved renewal shows quickly); `MLC_FULL=1` runs 5 minutes with the production TTL
//! (10 s). Prints the least slack measured at a renewal, the longest a message waited,
//! and the messages counted.
//!
//! ```text
//! cargo nextest run -p mlc-bus --test lease_load --no-capture
//! ```

use mlc_bus::consume::Linger;
use mlc_bus::delivery::answer;
use mlc_bus::feed::Feed;
use mlc_bus::lease::LeaseConfig;
use mlc_bus::partitions::Partitions;
use mlc_bus::{ConsumerSpec, Topology};
use mlc_testkit::NatsServer;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// Spinning threads until the flag drops: the machine's cores busy, as on a loaded host.
struct Busy(Arc<AtomicBool>, Vec<std::thread::JoinHandle<u64>>);

impl Busy {
    fn start(threads: usize) -> Busy {
        let on = Arc::new(AtomicBool::new(true));
        let handles = (0..threads)
            .map(|_| {
                let on = on.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while on.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                    x
                })
            })
            .collect();
        Busy(on, handles)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_holder_keeps_its_leases_and_its_messages_flow() {
    // The lease decisions in the test output (`RUST_LOG=mlc_bus=debug` for more).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "mlc_bus=info".into()))
        .with_test_writer()
        .try_init();
    let full = std::env::var("MLC_FULL").is_ok_and(|v| v == "1");
    let (run_for, ttl) = if full {
        (Duration::from_secs(300), Duration::from_secs(10))
    } else {
        (Duration::from_secs(20), Duration::from_secs(4))
    };
    let server = NatsServer::start();
    let client = mlc_bus::connect_now(&server.config(), "lease-load").await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let topo = Topology::new(&mlc_testkit::unique("lb"), 1).unwrap().with_partitions(2).unwrap();
    mlc_bus::ensure_topology(&js, &topo).await.expect("topology");

    // One company per partition.
    let mut companies: HashMap<u32, String> = HashMap::new();
    for i in 0.. {
        let c = format!("company-{i}");
        companies.entry(topo.partition_of(&c)).or_insert(c);
        if companies.len() == 2 {
            break;
        }
    }

    let partitions = Partitions::start(
        &js,
        &topo,
        Some(LeaseConfig { role: "projector".into(), replica: "busy-1".into(), ttl }),
    )
    .await
    .expect("leases");
    let mut held = partitions.held();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.borrow().len() < 2 {
        assert!(Instant::now() < deadline, "the only replica did not take both partitions within 10 s");
        let _ = tokio::time::timeout(Duration::from_millis(200), held.changed()).await;
    }
    let changes = tokio::spawn({
        let mut held = held.clone();
        async move {
            let mut seen: Vec<BTreeSet<u32>> = Vec::new();
            while held.changed().await.is_ok() {
                seen.push(held.borrow_and_update().clone());
            }
            seen
        }
    });

    let spec = ConsumerSpec::HYDRATOR;
    let mut feed = Feed::start(
        js.clone(),
        topo.clone(),
        spec,
        held.clone(),
        64,
        Linger::fixed(Duration::from_millis(5)),
    );
    let consumer = tokio::spawn(async move {
        let mut waits: Vec<u64> = Vec::new();
        let mut ids: HashMap<String, u32> = HashMap::new();
        while let Some((_, batch)) = feed.next_batch().await {
            for m in batch {
                let text = String::from_utf8_lossy(&m.payload).to_string();
                let (id, sent) = text.split_once(' ').expect("id and time");
                waits.push(now_ms().saturating_sub(sent.parse().expect("ms")));
                *ids.entry(id.to_string()).or_default() += 1;
                answer(&m, async_nats::jetstream::AckKind::Ack).await.expect("ack");
            }
            if ids.contains_key("stop-0") && ids.contains_key("stop-1") {
                break;
            }
        }
        (waits, ids)
    });

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let busy = Busy::start(2 * cores);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < run_for {
        for (p, c) in &companies {
            let subject = topo.gusto_event(c, "Employee");
            let body = format!("m{sent}-{p} {}", now_ms());
            js.publish(subject, body.into()).await.expect("publish").await.expect("stored");
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (p, c) in &companies {
        let body = format!("stop-{p} {}", now_ms());
        js.publish(topo.gusto_event(c, "Employee"), body.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let (waits, ids) = tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .expect("the consumer did not see both stop messages within 30 s of the last publish")
        .expect("consumer task");
    drop(busy);
    let min_slack = partitions.min_slack();
    partitions.release().await;
    let seen = changes.await.expect("watch task");

    let longest = waits.iter().copied().max().unwrap_or(0);
    let doubled = ids.values().filter(|n| **n > 1).count();
    println!(
        "busy holder ({} spinning threads on {cores} cores, {} s, lease TTL {} ms): {} messages, longest wait \
         {longest} ms, {doubled} redelivered, least renewal slack {} ms, lease changes {}",
        2 * cores,
        run_for.as_secs(),
        ttl.as_millis(),
        waits.len(),
        min_slack.map_or(-1, |d| d.as_millis() as i64),
        seen.len().saturating_sub(1),
    );
    // The release at the end is the one change allowed.
    assert_eq!(seen, vec![BTreeSet::new()], "the held partitions changed under load");
    assert_eq!(ids.len() as u64, 2 * sent + 2, "every message arrived");
    assert_eq!(doubled, 0, "no message was redelivered (none outlived its ack wait)");
    assert!(longest < 2_000, "a message waited {longest} ms (bound 2 s)");
    let slack = min_slack.expect("renewals were measured");
    assert!(slack >= ttl / 2, "a renewal came with only {slack:?} of the {ttl:?} lease left");
}
