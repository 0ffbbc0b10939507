//! Partition leases and the shared rate window against a real nats-server.

use mlc_bus::lease::{self, LeaseConfig};
use mlc_bus::ratelimit::SharedWindow;
use mlc_bus::Topology;
use mlc_testkit::NatsServer;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn cfg(replica: &str) -> LeaseConfig {
    LeaseConfig { role: "writer".into(), replica: replica.into(), ttl: Duration::from_millis(1200) }
}

async fn settle(rxs: &[tokio::sync::watch::Receiver<BTreeSet<u32>>], want: usize) -> Vec<BTreeSet<u32>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sets: Vec<BTreeSet<u32>> = rxs.iter().map(|r| r.borrow().clone()).collect();
        let union: BTreeSet<u32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(|s| s.len()).sum();
        // Balanced as well as complete: every replica at its fair share at most (a replica
        // gives back what is above it on its next balance, TTL/2 after the last).
        let fair = want.div_ceil(rxs.len());
        if union.len() == want && total == want && sets.iter().all(|s| !s.is_empty() && s.len() <= fair) {
            return sets;
        }
        assert!(Instant::now() < deadline, "leases did not settle: {sets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replicas_share_partitions_without_overlap_and_take_over_from_the_dead() {
    let server = NatsServer::start();
    let client = mlc_bus::connect_now(&server.config(), "t").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let topo = Topology::new(&mlc_testkit::unique("l"), 1).unwrap().with_partitions(8).unwrap();
    let a = lease::start(&js, &topo, cfg("a")).await.unwrap();
    let b = lease::start(&js, &topo, cfg("b")).await.unwrap();
    let sets = settle(&[a.watch(), b.watch()], 8).await;
    assert!(sets.iter().all(|s| s.len() == 4), "fair shares: {sets:?}");
    assert!(sets[0].is_disjoint(&sets[1]));

    // A third replica joins: the others give some back.
    let c = lease::start(&js, &topo, cfg("c")).await.unwrap();
    let sets = settle(&[a.watch(), b.watch(), c.watch()], 8).await;
    assert!(sets.iter().all(|s| s.len() <= 3), "{sets:?}");

    // c dies without giving anything back: a and b take its partitions after expiry.
    c.abandon();
    let sets = settle(&[a.watch(), b.watch()], 8).await;
    assert!(sets[0].is_disjoint(&sets[1]));
    // b shuts down gracefully: a takes everything without waiting for expiry.
    b.release().await;
    let sets = settle(&[a.watch()], 8).await;
    assert_eq!(sets[0].len(), 8);
}

#[tokio::test]
async fn the_shared_window_never_admits_more_than_its_limit() {
    let server = NatsServer::start();
    let client = mlc_bus::connect_now(&server.config(), "t").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let topo = Topology::new(&mlc_testkit::unique("r"), 1).unwrap();
    let window = Duration::from_millis(600);
    let limiter = SharedWindow::ensure(&js, &topo, 5, window).await.unwrap();
    let started = Instant::now();
    // Two "replicas" share the grant's window.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let l = limiter.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                for _ in 0..8 {
                    l.acquire("grant-1").await.unwrap();
                    times.push(Instant::now());
                }
                times
            })
        })
        .collect();
    let mut times: Vec<Instant> = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    times.sort();
    // 16 slots at 5 per window need at least three full windows after the first burst.
    assert!(started.elapsed() >= window * 3 - Duration::from_millis(50), "{:?}", started.elapsed());
    // Never more than 5 granted inside any window (a little slack for clock reads).
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|u| **u < *t + window - Duration::from_millis(30)).count();
        assert!(inside <= 5, "{inside} slots within one window");
    }
    // Another key has its own window.
    let t = Instant::now();
    limiter.acquire("grant-2").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_streams_on_a_three_node_cluster_survive_a_node() {
    use mlc_bus::{ensure_topology, Publisher, StreamKind};
    use mlc_proto::v1::GustoEvent;
    let mut cluster = mlc_testkit::NatsCluster::start(3);
    let client = mlc_bus::connect(&cluster.config(), "t").await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let topo = Topology::new(&mlc_testkit::unique("c"), 3).unwrap().with_partitions(4).unwrap();
    // The cluster elects its JetStream leader first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = ensure_topology(&js, &topo).await {
        assert!(Instant::now() < deadline, "cluster not ready: {e}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut s = js.get_stream(topo.stream(StreamKind::GustoEvents)).await.unwrap();
    assert_eq!(s.info().await.unwrap().config.num_replicas, 3);
    let publisher = Publisher::new(client, Duration::from_secs(5));
    let mut stored = 0;
    for i in 0..40 {
        if i == 20 {
            cluster.stop_node(0);
        }
        let ev = GustoEvent { event_uuid: format!("e{i}"), ..Default::default() };
        let subject = topo.gusto_event(&format!("company-{}", i % 7), "Employee");
        // A publish may time out while the stream moves its leader; the retry with the
        // same id is safe.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match publisher.publish(&subject, &ev.event_uuid, &ev).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no publish after a node died: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        stored += 1;
    }
    cluster.start_node(0);
    let mut s = js.get_stream(topo.stream(StreamKind::GustoEvents)).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, stored);
}
