//! `--metrics-addr HOST:PORT`: Prometheus text exposition at `/metrics`
//! while tracing, for watching many hosts from one Prometheus.
//!
//! A small HTTP server (tiny_http) runs on its own thread, apart from the
//! collector; each scrape takes a short lock on the session's statistics,
//! copies the numbers and encodes them with prometheus-client. Series:
//!
//! - `hwbp_hits_total{target,symbol,mode}`: hits per target, from the
//!   kernel's aggregates once the session has read them (every hit
//!   counted, with or without a record), from the records until then.
//! - `hwbp_hits_by_comm_total{target,comm}`: the same per command name, the
//!   busiest [`COMM_LABELS_LIMIT`] per target, the rest as `comm="[other]"`
//!   (label values are unbounded: a cap keeps Prometheus healthy).
//! - `hwbp_dropped_total`: hits whose record found no place in the ring
//!   buffer (full, or its lock held by another CPU throughout).
//! - `hwbp_retraps_total{target,symbol,mode}` (arm64 only): traps that
//!   repeated the one before because an interrupt ended the kernel's single
//!   step early (docs/arm64.md): not hits, not lost.
//! - `hwbp_rejected_total{target,symbol,mode}`: hits a target's condition
//!   (`TARGET if COND`) rejected in the kernel (targets with one only).
//! - `hwbp_armed_breakpoints`: perf events armed (targets × CPUs or threads).
//! - `hwbp_ringbuf_fill_ratio`: how full the BPF ring buffer is, 0 to 1
//!   (once armed: the ring buffer is found among the process's descriptors).

use std::{
    fs,
    net::SocketAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
};

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use thiserror::Error;

use crate::{output::stats::SharedStats, probe::arm::Armament};

/// Command names kept as label values per target.
pub const COMM_LABELS_LIMIT: usize = 20;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error(
        "--metrics-addr {addr}: {reason}; give a free HOST:PORT such as 127.0.0.1:9464 or 0.0.0.0:9464"
    )]
    Bind { addr: String, reason: String },
}

type Labels = Vec<(String, String)>;

#[derive(Clone, Debug)]
struct TargetLabels {
    target: String,
    symbol: String,
    mode: String,
    /// It has a condition: its rejected hits are a series.
    condition: bool,
}

/// What the server shows besides the statistics: set once armed.
#[derive(Default)]
struct Armed {
    targets: Mutex<Vec<TargetLabels>>,
    breakpoints: AtomicUsize,
    ring: Mutex<Option<RingFill>>,
}

/// The metrics endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    armed: Arc<Armed>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves from `stats` on a thread of its own.
    pub fn start(addr: &str, stats: SharedStats) -> Result<Self, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| MetricsError::Bind {
                addr: addr.to_owned(),
                reason: "not an IP address".into(),
            })?;
        let server = Arc::new(server);
        let armed = Arc::new(Armed::default());
        let thread = {
            let server = server.clone();
            let armed = armed.clone();
            std::thread::Builder::new()
                .name("hwbp-metrics".into())
                .spawn(move || serve(&server, &stats, &armed))
                .map_err(|e| MetricsError::Bind {
                    addr: addr.to_owned(),
                    reason: format!("cannot start its thread: {e}"),
                })?
        };
        Ok(Self {
            server,
            armed,
            thread: Some(thread),
            addr: local,
        })
    }

    /// Called once everything is armed: target labels, breakpoint count,
    /// and the ring buffer to watch.
    pub fn armed(&self, armament: &Armament) {
        if let Ok(mut targets) = self.armed.targets.lock() {
            *targets = armament
                .breakpoints
                .iter()
                .map(|bp| TargetLabels {
                    target: bp.spec.text.clone(),
                    symbol: bp.symbol.clone(),
                    mode: bp.mode.as_str().to_owned(),
                    condition: bp.spec.condition.is_some(),
                })
                .collect();
        }
        self.armed
            .breakpoints
            .store(armament.events, Ordering::Relaxed);
        if let Ok(mut ring) = self.armed.ring.lock() {
            *ring = RingFill::find();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, stats: &SharedStats, armed: &Armed) {
    for request in server.incoming_requests() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get, "/metrics") => match render(stats, armed) {
                Ok(text) => {
                    let mut response = tiny_http::Response::from_string(text);
                    if let Ok(header) = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        prometheus_text::CONTENT_TYPE.as_bytes(),
                    ) {
                        response.add_header(header);
                    }
                    response
                }
                Err(e) => tiny_http::Response::from_string(format!("encoding failed: {e}\n"))
                    .with_status_code(500),
            },
            (tiny_http::Method::Get, "/") => {
                tiny_http::Response::from_string("hwbp-trace: metrics at /metrics\n")
            }
            _ => {
                tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404)
            }
        };
        // A scraper that hung up is its own problem.
        let _ = request.respond(response);
    }
}

/// Whether re-traps can happen, so have a series (arm64).
const RETRAPS: bool = cfg!(target_arch = "aarch64");

/// The exposition text of the current numbers.
fn render(stats: &SharedStats, armed: &Armed) -> Result<String, std::fmt::Error> {
    let targets = armed.targets.lock().map(|t| t.clone()).unwrap_or_default();
    // Copy under the lock, encode after it.
    let (hits, comms, dropped, rejected, retraps) = match stats.lock() {
        Ok(s) => {
            let hits: Vec<u64> = s.targets.iter().map(|t| t.hits).collect();
            let rejected: Vec<u64> = s.counters.iter().map(|c| c.cond_rejected).collect();
            let retraps: Vec<u64> = s.counters.iter().map(|c| c.retraps).collect();
            let comms: Vec<Vec<(String, u64)>> = s
                .targets
                .iter()
                .map(|t| {
                    let mut c: Vec<(String, u64)> = t
                        .by_comm
                        .counts
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect();
                    c.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    let other: u64 = c
                        .iter()
                        .skip(COMM_LABELS_LIMIT)
                        .map(|(_, n)| n)
                        .sum::<u64>()
                        + t.by_comm.overflow;
                    c.truncate(COMM_LABELS_LIMIT);
                    if other > 0 {
                        c.push(("[other]".to_owned(), other));
                    }
                    c
                })
                .collect();
            (hits, comms, s.dropped(), rejected, retraps)
        }
        Err(_) => (Vec::new(), Vec::new(), 0, Vec::new(), Vec::new()),
    };

    let mut registry = Registry::default();
    let hits_family = Family::<Labels, Counter>::default();
    let comm_family = Family::<Labels, Counter>::default();
    let rejected_family = Family::<Labels, Counter>::default();
    let retraps_family = Family::<Labels, Counter>::default();
    for (i, t) in targets.iter().enumerate() {
        let labels = vec![
            ("target".to_owned(), t.target.clone()),
            ("symbol".to_owned(), t.symbol.clone()),
            ("mode".to_owned(), t.mode.clone()),
        ];
        hits_family
            .get_or_create(&labels)
            .inc_by(hits.get(i).copied().unwrap_or(0));
        if t.condition {
            rejected_family
                .get_or_create(&labels)
                .inc_by(rejected.get(i).copied().unwrap_or(0));
        }
        if RETRAPS {
            retraps_family
                .get_or_create(&labels)
                .inc_by(retraps.get(i).copied().unwrap_or(0));
        }
        for (comm, n) in comms.get(i).map(Vec::as_slice).unwrap_or_default() {
            let labels = vec![
                ("target".to_owned(), t.target.clone()),
                ("comm".to_owned(), comm.clone()),
            ];
            comm_family.get_or_create(&labels).inc_by(*n);
        }
    }
    registry.register(
        "hwbp_hits",
        "Hits per target (every hit the kernel counted, once its aggregates are read)",
        hits_family,
    );
    registry.register(
        "hwbp_hits_by_comm",
        format!("Hits per target and command name (the busiest {COMM_LABELS_LIMIT}, then [other])"),
        comm_family,
    );
    if targets.iter().any(|t| t.condition) {
        registry.register(
            "hwbp_rejected",
            "Hits a target's condition rejected in the kernel",
            rejected_family,
        );
    }
    if RETRAPS {
        registry.register(
            "hwbp_retraps",
            "Traps that repeated the one before after an interrupt (arm64): not hits",
            retraps_family,
        );
    }
    let dropped_counter = Counter::<u64>::default();
    dropped_counter.inc_by(dropped);
    registry.register(
        "hwbp_dropped",
        "Hits lost because the ring buffer was full",
        dropped_counter,
    );
    let armed_gauge = Gauge::<i64>::default();
    armed_gauge.set(i64::try_from(armed.breakpoints.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    registry.register(
        "hwbp_armed_breakpoints",
        "Perf events armed (targets times CPUs or threads)",
        armed_gauge,
    );
    // Absent until the ring buffer is found (before arming, or if it is not):
    // no series is better than a made-up 0.
    if let Some(ratio) = armed
        .ring
        .lock()
        .ok()
        .and_then(|r| r.as_ref().map(RingFill::ratio))
    {
        let fill = Gauge::<f64, AtomicU64>::default();
        fill.set(ratio);
        registry.register(
            "hwbp_ringbuf_fill_ratio",
            "How full the BPF ring buffer is (0 to 1)",
            fill,
        );
    }

    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// BPF_MAP_TYPE_RINGBUF (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// A read-only view of a BPF ring buffer's positions: the consumer
/// position on the map's first page, the producer's on the second
/// (kernel/bpf/ringbuf.c, `struct bpf_ringbuf`). Found among this process's
/// descriptors by type in /proc/self/fdinfo, so that the collector needs to
/// know nothing of metrics.
pub struct RingFill {
    consumer: *const u64,
    producer: *const u64,
    page: usize,
    size: u64,
    _fd: OwnedFd,
}

// SAFETY: the pointers are to kernel-shared pages mapped read-only for the
// life of the value; reads are volatile loads of naturally aligned u64s.
unsafe impl Send for RingFill {}

impl RingFill {
    /// The largest BPF ring buffer this process has open (aya-log's, if
    /// any, is far smaller than hwbp's).
    pub fn find() -> Option<Self> {
        let mut found: Option<(i32, u64)> = None;
        for entry in fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
            let Ok(info) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if field("map_type:") == Some(u64::from(BPF_MAP_TYPE_RINGBUF)) {
                let Some(fd) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<i32>().ok())
                else {
                    continue;
                };
                let size = field("max_entries:").unwrap_or(0);
                if found.is_none_or(|(_, biggest)| size > biggest) {
                    found = Some((fd, size));
                }
            }
        }
        let (fd, size) = found?;
        // SAFETY: dup of a descriptor this process has open; the result is
        // owned by the OwnedFd below.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` is a fresh descriptor that nothing else owns.
        let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(dup) };
        // SAFETY: sysconf has no memory effects.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        // SAFETY: maps the first two pages of the ring buffer map read-only
        // (consumer page, producer page); the kernel allows PROT_READ for
        // both. Checked against MAP_FAILED below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            consumer: base.cast::<u64>(),
            // SAFETY: within the 2-page mapping just made.
            producer: unsafe { base.cast::<u8>().add(page) }.cast::<u64>(),
            page,
            size,
            _fd: fd,
        })
    }

    /// Bytes written but not yet consumed, over the buffer's size.
    pub fn ratio(&self) -> f64 {
        // SAFETY: both pointers are page-aligned addresses inside the live
        // read-only mapping; the kernel updates them concurrently, hence
        // volatile loads.
        let (consumer, producer) =
            unsafe { (self.consumer.read_volatile(), self.producer.read_volatile()) };
        if self.size == 0 {
            return 0.0;
        }
        (producer.saturating_sub(consumer) as f64 / self.size as f64).clamp(0.0, 1.0)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `find`.
        unsafe { libc::munmap(self.consumer as *mut libc::c_void, 2 * self.page) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{output::stats::Stats, record::format::HitRecord};

    /// Stats of one target `t` (symbol `sym`, mode `w`) with a hit per
    /// comm in `comms`, and the target's labels as armed.
    fn one_target(comms: impl IntoIterator<Item = String>) -> (SharedStats, Armed) {
        let stats: SharedStats = Arc::new(Mutex::new(Stats::new(1)));
        if let Ok(mut s) = stats.lock() {
            for comm in comms {
                let hit = HitRecord {
                    comm: comm.into(),
                    target: "t".into(),
                    ..Default::default()
                };
                s.record(0, hit.into());
            }
        }
        let armed = Armed::default();
        if let Ok(mut t) = armed.targets.lock() {
            t.push(TargetLabels {
                target: "t".into(),
                symbol: "sym".into(),
                mode: "w".into(),
                condition: false,
            });
        }
        (stats, armed)
    }

    #[test]
    fn exposition_text() {
        let (stats, armed) = one_target(["a", "a", "b"].map(String::from));
        armed.breakpoints.store(2, Ordering::Relaxed);
        let text = render(&stats, &armed).expect("render");
        assert!(
            !text.contains("hwbp_ringbuf_fill_ratio"),
            "no ring buffer known yet: {text}"
        );
        for line in [
            "# TYPE hwbp_hits_total counter",
            "hwbp_hits_total{target=\"t\",symbol=\"sym\",mode=\"w\"} 3",
            "hwbp_hits_by_comm_total{target=\"t\",comm=\"a\"} 2",
            "hwbp_hits_by_comm_total{target=\"t\",comm=\"b\"} 1",
            "hwbp_dropped_total 0",
            "hwbp_armed_breakpoints 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(!text.contains("hwbp_rejected"), "no condition: {text}");
    }

    /// A target with a condition has its rejected hits as a series.
    #[test]
    fn rejected_hits_of_conditions() {
        let (stats, armed) = one_target(["a"].map(String::from));
        if let Ok(mut t) = armed.targets.lock() {
            t[0].condition = true;
        }
        if let Ok(mut s) = stats.lock() {
            s.counters[0].cond_rejected = 7;
        }
        let text = render(&stats, &armed).expect("render");
        let line = "hwbp_rejected_total{target=\"t\",symbol=\"sym\",mode=\"w\"} 7";
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }

    #[test]
    fn comm_labels_are_capped() {
        // 25 command names, `c00` with 1 hit up to `c24` with 25: the 20
        // busiest (c05..=c24) get series, c00..=c04 share `[other]`.
        let (stats, armed) =
            one_target((0..25u64).flat_map(|i| (0..=i).map(move |_| format!("c{i:02}"))));
        let text = render(&stats, &armed).expect("render");
        let series: Vec<(&str, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("hwbp_hits_by_comm_total{target=\"t\",comm=\""))
            .filter_map(|l| {
                let (comm, n) = l.split_once("\"} ")?;
                Some((comm, n.parse().ok()?))
            })
            .collect();
        let mut expected: Vec<(String, u64)> = (5..25u64)
            .rev()
            .map(|i| (format!("c{i:02}"), i + 1))
            .collect();
        expected.push(("[other]".into(), 1 + 2 + 3 + 4 + 5));
        let by_count = |a: &(String, u64), b: &(String, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        expected.sort_by(by_count);
        let mut got: Vec<(String, u64)> = series
            .iter()
            .map(|&(comm, n)| (comm.to_owned(), n))
            .collect();
        got.sort_by(by_count);
        assert_eq!(got, expected, "{text}");
        assert_eq!(series.len(), COMM_LABELS_LIMIT + 1);
        // Every hit is in exactly one series.
        assert_eq!(
            series.iter().map(|(_, n)| n).sum::<u64>(),
            (1..=25).sum::<u64>()
        );
    }

    #[test]
    fn serves_over_http() {
        let stats: SharedStats = Arc::new(Mutex::new(Stats::new(0)));
        let server = MetricsServer::start("127.0.0.1:0", stats).expect("bind");
        let url = format!("http://{}/metrics", server.addr);
        let mut response = ureq::get(&url).call().expect("GET /metrics");
        assert_eq!(response.status(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some(prometheus_text::CONTENT_TYPE));
        let body = response.body_mut().read_to_string().expect("body");
        assert!(
            body.lines().any(|l| l == "hwbp_armed_breakpoints 0"),
            "{body}"
        );
        // Anything else is a 404 (ureq makes that an error).
        match ureq::get(&format!("http://{}/nothing", server.addr)).call() {
            Err(ureq::Error::StatusCode(404)) => {}
            other => panic!("expected a 404, got {other:?}"),
        }
        drop(server);
    }
}
