//! `/metrics`: Prometheus text (0.0.4) through prometheus-client. Counters of what happened
//! (reloads by trigger and result, their durations, builds, restarts) are kept here and
//! moved by the supervisor as things happen; what is (instances, their memory and CPU,
//! hotrun's own RSS and fds) is read from a status snapshot at each scrape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::control::protocol::{InstanceState, Status};

type AppLabel = [(&'static str, String); 1];
const NO_LABELS: [(&str, String); 0] = [];
type ReloadLabels = [(&'static str, String); 3];
type ResultLabels = [(&'static str, String); 2];

fn reload_histogram() -> Histogram {
    // 0.1 s to about 100 s.
    Histogram::new(exponential_buckets(0.1, 2.0, 11))
}

/// The counters the supervisor moves; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    reloads: Family<ReloadLabels, Counter>,
    reload_seconds: Family<AppLabel, Histogram, fn() -> Histogram>,
    builds: Family<ResultLabels, Counter>,
    restarts: Family<AppLabel, Counter>,
    registry: Arc<Registry>,
    snapshot: Arc<Mutex<Option<Status>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let reloads = Family::<ReloadLabels, Counter>::default();
        let reload_seconds = Family::<AppLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            reload_histogram,
        );
        let builds = Family::<ResultLabels, Counter>::default();
        let restarts = Family::<AppLabel, Counter>::default();
        let snapshot = Arc::new(Mutex::new(None));
        let mut registry = Registry::with_prefix("hotrun");
        registry.register(
            "reloads",
            "Rolling reloads that ended, by app, trigger (hotrun reload, SIGHUP, watch, memory, liveness, cron_restart, rs, hotrun check) and result (ok, failed)",
            reloads.clone(),
        );
        registry.register(
            "reload_duration_seconds",
            "Time from a reload's start (its build included) to its end, by app",
            reload_seconds.clone(),
        );
        registry.register(
            "builds",
            "Builds (the app's build key) that ended, by app and result (ok, failed)",
            builds.clone(),
        );
        registry.register(
            "restarts",
            "Instances started again after they exited, by app",
            restarts.clone(),
        );
        registry.register_collector(Box::new(Snapshot(snapshot.clone())));
        Metrics {
            reloads,
            reload_seconds,
            builds,
            restarts,
            registry: Arc::new(registry),
            snapshot,
        }
    }

    /// A reload of `app` ended.
    pub fn reload_done(&self, app: &str, trigger: &str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&[
                ("app", app.to_string()),
                ("trigger", trigger.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
        self.reload_seconds
            .get_or_create(&[("app", app.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn build_done(&self, app: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.builds
            .get_or_create(&[("app", app.to_string()), ("result", result.to_string())])
            .inc();
    }

    pub fn restarted(&self, app: &str) {
        self.restarts
            .get_or_create(&[("app", app.to_string())])
            .inc();
    }

    /// The text of a scrape, with `status` as what is now.
    pub fn encode(&self, status: Status) -> String {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing into a String does not fail");
        out
    }
}

/// What is now, for one scrape.
#[derive(Debug)]
struct Snapshot(Arc<Mutex<Option<Status>>>);

/// One metric family written from the snapshot: its name, help, type, and a value per
/// label set.
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: Vec<(L, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in &values {
        let one = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*value).encode(one)?,
            _ => ConstGauge::new(*value).encode(one)?,
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(status) = guard.as_ref() else {
            return Ok(());
        };
        let per_instance =
            |f: &dyn Fn(&crate::control::protocol::InstanceStatus) -> Option<f64>| {
                status
                    .apps
                    .iter()
                    .flat_map(|app| {
                        app.instances.iter().filter_map(move |i| {
                            let labels =
                                [("app", app.name.clone()), ("instance", i.id.to_string())];
                            f(i).map(|v| (labels, v))
                        })
                    })
                    .collect::<Vec<_>>()
            };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        use MetricType::Gauge;
        family(
            &mut encoder,
            "instance_up",
            "1 while the instance's process runs",
            Gauge,
            per_instance(&|i| Some(flag(i.pid.is_some()))),
        )?;
        family(
            &mut encoder,
            "instance_ready",
            "1 while the instance is online (ready)",
            Gauge,
            per_instance(&|i| Some(flag(i.state == InstanceState::Online))),
        )?;
        family(
            &mut encoder,
            "instance_restarts",
            "Restarts of the instance after exits, since it last took its slot",
            Gauge,
            per_instance(&|i| Some(i.restarts as f64)),
        )?;
        family(
            &mut encoder,
            "instance_memory_bytes",
            "Resident memory of the instance's process group",
            Gauge,
            per_instance(&|i| i.memory_bytes.map(|b| b as f64)),
        )?;
        family(
            &mut encoder,
            "instance_cpu_seconds",
            "CPU time (user + system) of the instance's live processes (a gauge: it drops when a child exits)",
            Gauge,
            per_instance(&|i| i.cpu_seconds),
        )?;
        family(
            &mut encoder,
            "instance_uptime_seconds",
            "Time since the instance's process started",
            Gauge,
            per_instance(&|i| i.uptime_ms.map(|ms| ms as f64 / 1000.0)),
        )?;
        let per_app = |ready: bool| {
            status
                .apps
                .iter()
                .map(|app| {
                    let n = app
                        .instances
                        .iter()
                        .filter(|i| !ready || i.state == InstanceState::Online)
                        .count();
                    ([("app", app.name.clone())], n as f64)
                })
                .collect::<Vec<_>>()
        };
        family(
            &mut encoder,
            "app_instances_wanted",
            "Instances the app runs",
            Gauge,
            per_app(false),
        )?;
        family(
            &mut encoder,
            "app_instances_ready",
            "Instances of the app that are online",
            Gauge,
            per_app(true),
        )?;
        family(
            &mut encoder,
            "process_resident_memory_bytes",
            "hotrun's own resident memory",
            Gauge,
            vec![(NO_LABELS, own_rss() as f64)],
        )?;
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        family(
            &mut encoder,
            "process_open_fds",
            "hotrun's own open file descriptors",
            Gauge,
            vec![(NO_LABELS, fds as f64)],
        )?;
        Ok(())
    }
}

/// hotrun's resident memory, from /proc/self/statm.
fn own_rss() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}
