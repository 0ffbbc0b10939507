//! Network namespaces for partition tests: each node gets its own namespace, joined to the
//! host by a veth pair, so a test can cut one node off the network (the link goes down:
//! packets vanish, connections hang until their timeouts) instead of only killing it (the
//! kernel then answers with resets at once). That is the difference between a crash and a
//! partition, and the one a cluster and its clients must survive.
//!
//! Needs root and iproute2 (`ip netns`, veth), as CI and this machine have. Addresses are
//! 10.X.Y.(4i+1) on the host side and 10.X.Y.(4i+2) in node i's namespace, with X.Y drawn
//! from the process id and a counter, so tests in parallel do not collide; the host forwards
//! between the namespaces. Namespaces left by a test process that died are removed by the
//! next one (their names carry the creator's pid).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Name prefix of every namespace made here: `mlcp<pid>x<seq>n<i>`.
const PREFIX: &str = "mlcp";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One namespace per node; removed (with the veth pairs) on drop.
pub struct Namespaces {
    nodes: Vec<Node>,
}

struct Node {
    netns: String,
    host_link: String,
    addr: String,
}

/// Runs `ip args...`; the error names the command and what `ip` said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces whose creating process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid = rest.split('x').next().unwrap_or_default();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Namespaces {
    /// `n` namespaces, each reachable from the host and from the others. Fails (with what
    /// `ip` said) where namespaces cannot be made, e.g. without root.
    pub fn create(n: usize) -> Result<Namespaces, String> {
        remove_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        // 14 bits of (pid, seq) pick the /24 of this set; veth names stay within 15 bytes.
        let id = (pid.wrapping_mul(31).wrapping_add(seq)) & 0x3fff;
        let (x, y) = (100 + (id >> 8), id & 0xff);
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| format!("enable ip_forward: {e}"))?;
        let mut made = Namespaces { nodes: Vec::new() };
        for i in 0..n {
            let netns = format!("{PREFIX}{pid}x{seq}n{i}");
            let (host_link, ns_link) = (format!("mh{id:04x}{i}"), format!("mn{id:04x}{i}"));
            let host_addr = format!("10.{x}.{y}.{}", 4 * i + 1);
            let addr = format!("10.{x}.{y}.{}", 4 * i + 2);
            ip(&["netns", "add", &netns])?;
            // Pushed before the rest, so a failure below still removes this namespace.
            made.nodes.push(Node { netns: netns.clone(), host_link: host_link.clone(), addr: addr.clone() });
            ip(&["link", "add", &host_link, "type", "veth", "peer", "name", &ns_link])?;
            ip(&["link", "set", &ns_link, "netns", &netns])?;
            ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_link])?;
            ip(&["link", "set", &host_link, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", netns.as_str(), "ip"];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["addr", "add", &format!("{addr}/30"), "dev", &ns_link])?;
            inside(&["link", "set", &ns_link, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
            inside(&["route", "add", "default", "via", &host_addr])?;
        }
        Ok(made)
    }

    /// Node `i`'s address (in its namespace, reachable from the host).
    pub fn addr(&self, i: usize) -> &str {
        &self.nodes[i].addr
    }

    /// `cmd` to run inside node `i`'s namespace (`ip netns exec` then execs it, so the
    /// process keeps the pid the caller sees).
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[i].netns]).arg(program);
        cmd
    }

    /// Cuts node `i` off: its link goes down, so nothing reaches it and it reaches nothing.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.nodes[i].host_link, "down"]).expect("cut the node's link");
    }

    /// Joins node `i` again.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.nodes[i].host_link, "up"]).expect("restore the node's link");
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the host's.
        for node in &self.nodes {
            let _ = ip(&["netns", "del", &node.netns]);
        }
    }
}
