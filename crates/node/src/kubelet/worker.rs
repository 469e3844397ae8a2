//! One pod's worker task: sandbox, container starts in the order [`PodLifecycle`] gives, events from
//! container and probe tasks, status, and the final teardown.

use super::container::{self, ContainerHandle, PodRef, StopRequest};
use super::pull::{self, Pulls};
use super::{ExecTarget, Inner, PodEvent, PodShared, PodStatusUpdate, lock};
use crate::backoff::{CreateBackoff, Retry};
use crate::env::{EnvContext, ObjectLookup, resolve_env};
use crate::lifecycle::{Event, PodLifecycle};
use crate::logs::{LogConfig, LogWriter, wall_now};
use crate::probe::{ContainerProbes, ProbeAction};
use crate::quantity::Quantity;
use crate::runtime_class::ContainerRuntime;
use crate::sandbox::{self, SandboxPlan};
use crate::status::{Observed, waiting_state};
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stead_image::pull::Image;
use tokio::sync::{mpsc, watch};

/// The condition type that reports limits the machine cannot enforce.
pub const LIMITS_CONDITION: &str = "stead.dev/ResourceLimits";

/// A validated pod, ready for its worker.
pub(super) struct Prepared {
    pod: Pod,
    lookup: Arc<dyn ObjectLookup + Send + Sync>,
    lifecycle: PodLifecycle,
    pub shared: Arc<Mutex<PodShared>>,
}

fn memory_limit(c: &Container) -> Result<Option<u64>, String> {
    let Some(q) = c.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|l| l.get("memory")) else {
        return Ok(None);
    };
    let v = Quantity::parse(&q.0)
        .map_err(|e| format!("container {:?}: resources.limits.memory: {e}", c.name))?
        .value()
        .ok_or_else(|| {
            format!("container {:?}: resources.limits.memory {:?} is out of range", c.name, q.0)
        })?;
    u64::try_from(v).map(Some).map_err(|_| {
        format!("container {:?}: resources.limits.memory {:?} must not be negative", c.name, q.0)
    })
}

fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(s.containers.iter()))
}

/// Validates everything that can be checked before anything is created.
pub(super) fn prepare(
    k: &Inner,
    pod: Pod,
    lookup: Arc<dyn ObjectLookup + Send + Sync>,
) -> Result<Prepared, String> {
    let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
    if spec.containers.is_empty() {
        return Err("the pod has no containers".into());
    }
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let lifecycle = PodLifecycle::new(&format!("{ns}/{name}"), spec).map_err(|e| e.to_string())?;
    // The plan is pure; an address inside the CIDR stands in for the real one.
    let probe_ip =
        k.ipam.lock().map(|i| i.cidr().hosts().nth(1)).ok().flatten().unwrap_or(Ipv4Addr::UNSPECIFIED);
    sandbox::plan(&k.sandbox, &pod, probe_ip).map_err(|e| e.to_string())?;
    for c in containers(&pod) {
        ContainerProbes::new(c, Instant::now()).map_err(|e| e.to_string())?;
        memory_limit(c)?;
        crate::images::validate_pull_policy(c)?;
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let shared = Arc::new(Mutex::new(PodShared {
        log_dir: crate::logs::pod_log_dir(&k.cfg.state_dir.join("logs"), &ns, &name, &uid),
        ..Default::default()
    }));
    Ok(Prepared { pod, lookup, lifecycle, shared })
}

/// How a container runs, decided at its start.
enum Stage {
    HostProcess,
    Image(Arc<Image>),
}

/// A container that could not be created: the kubelet's Waiting reason and message, and the
/// back-off of its retries.
struct StartError {
    reason: &'static str,
    message: String,
    backoff: CreateBackoff,
}

struct Running {
    instance: u64,
    handle: ContainerHandle,
    /// Its postStart hook is still running: Kubernetes reports the container Waiting
    /// (`ContainerCreating`), not Running, until the hook completes.
    post_start: bool,
    /// `started` to apply once the postStart hook is done (the container counts as started, e.g. for
    /// the init container after a sidecar, only then).
    started_after_hook: bool,
}

struct Worker {
    k: Arc<Inner>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    lookup: Arc<dyn ObjectLookup + Send + Sync>,
    shared: Arc<Mutex<PodShared>>,
    rx: mpsc::UnboundedReceiver<PodEvent>,
    tx: mpsc::UnboundedSender<PodEvent>,
    lifecycle: PodLifecycle,
    plan: Option<SandboxPlan>,
    pod_ip: Option<Ipv4Addr>,
    running: HashMap<String, Running>,
    starts: HashMap<String, u32>,
    start_errors: BTreeMap<String, StartError>,
    pulls: Pulls,
    limit_notes: BTreeMap<String, String>,
    sandbox_error: Option<String>,
    start_time: Timestamp,
    last: Option<PodStatus>,
    seq: u64,
    stop_grace: Option<Duration>,
}

/// Starts the worker; returns its event sender and the "done" flag.
pub(super) fn spawn(k: Arc<Inner>, p: Prepared) -> (mpsc::UnboundedSender<PodEvent>, watch::Receiver<bool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let w = Worker {
        ns: p.pod.metadata.namespace.clone().unwrap_or_default(),
        name: p.pod.metadata.name.clone().unwrap_or_default(),
        uid: p.pod.metadata.uid.clone().unwrap_or_default(),
        k: k.clone(),
        pod: p.pod,
        lookup: p.lookup,
        shared: p.shared,
        rx,
        tx: tx.clone(),
        lifecycle: p.lifecycle,
        plan: None,
        pod_ip: None,
        running: HashMap::new(),
        starts: HashMap::new(),
        start_errors: BTreeMap::new(),
        pulls: Pulls::default(),
        limit_notes: BTreeMap::new(),
        sandbox_error: None,
        start_time: wall_now(),
        last: None,
        seq: 0,
        stop_grace: None,
    };
    k.rt.spawn(async move {
        w.run().await;
        let _ = done_tx.send(true);
    });
    (tx, done_rx)
}

impl Worker {
    fn pod_grace(&self) -> Duration {
        let secs = self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    fn container(&self, name: &str) -> Option<Container> {
        containers(&self.pod).find(|c| c.name == name).cloned()
    }

    fn env_ctx(&self) -> EnvContext {
        EnvContext {
            pod_ip: self.pod_ip.map(|ip| ip.to_string()),
            host_ip: Some(self.k.bridge_ip.to_string()),
            ..Default::default()
        }
    }

    async fn run(mut self) {
        self.publish();
        match self.setup().await {
            Ok(()) => self.main_loop().await,
            Err(e) => {
                self.sandbox_error = Some(e);
                self.publish();
                // Wait for the stop request; nothing runs.
                while let Some(ev) = self.rx.recv().await {
                    if matches!(ev, PodEvent::Stop { .. }) {
                        break;
                    }
                }
                self.lifecycle.stop();
            }
        }
        self.teardown().await;
        self.publish();
    }

    async fn setup(&mut self) -> Result<(), String> {
        let ip = lock(&self.k.ipam).allocate(&self.uid).map_err(|e| e.to_string())?;
        self.pod_ip = Some(ip);
        let plan = sandbox::plan(&self.k.sandbox, &self.pod, ip).map_err(|e| e.to_string())?;
        let ctx = self.env_ctx();
        let lookup = self.lookup.clone();
        let r = sandbox::setup(&*self.k.sys, &*self.k.nl, &plan, &self.pod, &*lookup, &ctx).await;
        match r {
            Ok(()) => {
                self.plan = Some(plan);
                Ok(())
            }
            Err(e) => Err(format!("pod sandbox: {e}")),
        }
    }

    async fn main_loop(&mut self) {
        loop {
            if !self.lifecycle.stopping() {
                let now = Instant::now();
                for name in self.lifecycle.due(now) {
                    if self.running.contains_key(&name)
                        || self.start_errors.get(&name).is_some_and(|e| e.backoff.in_backoff(now))
                        || self.pulls.busy(&name, now)
                    {
                        continue;
                    }
                    self.start_container(&name);
                }
            }
            let pod = self.pod_ref();
            self.pulls.report_backoffs(&self.k, &pod, Instant::now());
            self.publish();
            if self.lifecycle.stopping() && self.running.is_empty() {
                return;
            }
            let now = Instant::now();
            let wake = self
                .lifecycle
                .next_wakeup()
                .into_iter()
                .chain(self.start_errors.values().filter_map(|e| e.backoff.retry_at()))
                .chain(self.pulls.next_wakeup())
                .filter(|_| !self.lifecycle.stopping())
                .min()
                .map_or(now + Duration::from_secs(3600), |w| w.max(now + Duration::from_millis(5)));
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(ev) => self.handle(ev),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    fn handle(&mut self, ev: PodEvent) {
        match ev {
            PodEvent::Exited { container, instance, exit } => {
                if self.running.get(&container).is_none_or(|r| r.instance != instance) {
                    return;
                }
                self.running.remove(&container);
                lock(&self.shared).exec.remove(&container);
                self.lifecycle.record(&container, Event::Exited(exit), Instant::now(), wall_now());
            }
            PodEvent::Probe { container, instance, action } => {
                if self.running.get(&container).is_none_or(|r| r.instance != instance) {
                    return;
                }
                match action {
                    ProbeAction::None => {}
                    ProbeAction::Started => {
                        let has_readiness =
                            self.container(&container).is_some_and(|c| c.readiness_probe.is_some());
                        match self.running.get_mut(&container).filter(|r| r.post_start) {
                            Some(r) => r.started_after_hook = true,
                            None => self.lifecycle.set_started(&container, true),
                        }
                        self.lifecycle.set_ready(&container, !has_readiness);
                    }
                    ProbeAction::Ready(ready) => self.lifecycle.set_ready(&container, ready),
                    ProbeAction::Restart(_why) => {
                        self.lifecycle.set_ready(&container, false);
                        let grace = self.pod_grace();
                        if let Some(r) = self.running.get_mut(&container) {
                            r.handle.stop(StopRequest { grace });
                        }
                    }
                }
            }
            PodEvent::PostStartDone { container, instance } => {
                if let Some(r) = self.running.get_mut(&container).filter(|r| r.instance == instance) {
                    r.post_start = false;
                    let started = r.started_after_hook;
                    self.lifecycle.set_started(&container, started);
                }
            }
            PodEvent::Pulled { container, outcome } => {
                let image = self.container(&container).and_then(|c| c.image).unwrap_or_default();
                let pod = self.pod_ref();
                self.pulls.finish(&self.k, &pod, &container, &image, outcome);
                if self.pulls.waiting(&container, Instant::now()).is_some() {
                    // The pull's failure is what the container waits for now.
                    self.start_errors.remove(&container);
                }
            }
            PodEvent::Stop { grace } => {
                self.pulls.cancel_all();
                let grace = grace.unwrap_or_else(|| self.pod_grace());
                let grace = self.stop_grace.map_or(grace, |g| g.min(grace));
                self.stop_grace = Some(grace);
                self.lifecycle.stop();
                for r in self.running.values_mut() {
                    r.handle.stop(StopRequest { grace });
                }
            }
        }
    }

    fn pod_ref(&self) -> PodRef {
        PodRef { namespace: self.ns.clone(), name: self.name.clone(), uid: self.uid.clone() }
    }

    /// The image of a container of an image runtime, once pulled for this start; `Ok(None)`
    /// while its pull runs (started here when none does); `HostProcess` needs none.
    fn image_stage(&mut self, name: &str) -> Result<Option<Stage>, (&'static str, String)> {
        let c = self
            .container(name)
            .ok_or_else(|| ("CreateContainerConfigError", format!("container {name:?} is not in the pod")))?;
        let runtime = crate::runtime_class::container_runtime(&self.pod, name, self.k.cfg.default_runtime)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?;
        if runtime == ContainerRuntime::HostProcess {
            return Ok(Some(Stage::HostProcess));
        }
        if let Some(image) = self.pulls.take_ready(name) {
            return Ok(Some(Stage::Image(image)));
        }
        let (image, policy) = crate::images::pull_policy(&c).map_err(|e| ("InvalidImageName", e))?;
        let secrets = pull::pull_secrets(&self.pod, &*self.lookup);
        let pod = self.pod_ref();
        let text = c.image.clone().unwrap_or_default();
        self.pulls.begin(&self.k, &pod, name, &text, image, policy, secrets, self.tx.clone());
        Ok(None)
    }

    /// Starts a container (after its image's pull); one that cannot be created waits with the
    /// reason, and is tried again on its back-off (the pod stays Pending, as the kubelet keeps
    /// it), each failure an event.
    fn start_container(&mut self, name: &str) {
        let started = self.image_stage(name).and_then(|stage| match stage {
            None => Ok(false),
            Some(Stage::HostProcess) => self.try_start(name, None).map(|()| true),
            Some(Stage::Image(image)) => self.try_start(name, Some(image)).map(|()| true),
        });
        match started {
            Ok(false) => {}
            Ok(true) => {
                self.start_errors.remove(name);
            }
            Err((reason, message)) => {
                let _ = self.k.container_events.send(crate::kubelet::ContainerEvent {
                    namespace: self.ns.clone(),
                    name: self.name.clone(),
                    uid: self.uid.clone(),
                    container: name.to_owned(),
                    warning: true,
                    reason: "Failed".into(),
                    message: format!("Error: {message}"),
                });
                let entry = self.start_errors.entry(name.to_owned()).or_insert_with(|| StartError {
                    reason,
                    message: String::new(),
                    backoff: CreateBackoff::default(),
                });
                entry.reason = reason;
                entry.message = message;
                let retry = match reason {
                    "CreateContainerConfigError" | "InvalidImageName" => Retry::Steady,
                    _ => Retry::Doubling,
                };
                entry.backoff.record_failure(Instant::now(), retry);
            }
        }
    }

    fn try_start(&mut self, name: &str, image: Option<Arc<Image>>) -> Result<(), (&'static str, String)> {
        let config_err = |e: String| ("CreateContainerConfigError", e);
        let c = self
            .container(name)
            .ok_or_else(|| config_err(format!("container {name:?} is not in the pod")))?;
        let plan = self.plan.as_ref().ok_or_else(|| config_err("the pod has no sandbox".into()))?;
        let env = resolve_env(&self.pod, &c, &self.env_ctx(), &*self.lookup)
            .map_err(|e| config_err(e.to_string()))?;
        let mounts = sandbox::container_mounts(plan, &c, &env).map_err(|e| config_err(e.to_string()))?;
        let limit = memory_limit(&c).map_err(config_err)?;
        // A host-process container without a command cannot be created (the kubelet's
        // `CreateContainerError` for an image with no entrypoint).
        let host_exec = match &image {
            None => Some(
                crate::host_process::exec_spec(&self.pod, &c, &env)
                    .map_err(|e| ("CreateContainerError", e.to_string()))?,
            ),
            Some(_) => None,
        };
        let oci = match &image {
            Some(_) => Some(self.k.oci.clone().map_err(|e| ("CreateContainerError", e))?),
            None => None,
        };
        let cg = if self.k.cgroups.any() {
            self.k
                .cgroups
                .create(&self.uid, name, limit)
                .map_err(|e| ("CreateContainerError", e.to_string()))?
        } else {
            crate::cgroups::ContainerCgroup { memory_limit: limit, ..Default::default() }
        };
        match cg.unenforced() {
            Some(note) => self.limit_notes.insert(name.to_owned(), format!("container {name:?}: {note}")),
            None => self.limit_notes.remove(name),
        };
        let instance_no = self.starts.get(name).copied().unwrap_or(0);
        let log_dir = lock(&self.shared).log_dir.join(name);
        let log = LogWriter::open(&log_dir, instance_no, LogConfig::default())
            .map_err(|e| ("RunContainerError", e.to_string()))?;
        let oom_before = cg.oom_kills();
        let (proc, spec) = match (image, oci, host_exec) {
            (Some(image), Some(runtime), _) => {
                let cgroups_path = cg.dirs().next().map(|_| crate::oci::cgroups_path(&self.uid, name));
                let req = crate::oci::CreateRequest {
                    pod: &self.pod,
                    container: &c,
                    image: &image.config,
                    layers: &image.layers,
                    env: &env,
                    sandbox: plan,
                    mounts: &mounts,
                    cgroups_path: cgroups_path.as_deref(),
                    memory_limit: limit,
                    instance: instance_no,
                };
                let created = crate::oci::create(&*self.k.sys, &runtime, &req)
                    .map_err(|e| (e.reason(), e.to_string()))?;
                // runc puts the container into its cgroups itself.
                let proc = created.spawn(log).map_err(|e| {
                    let _ = created.remove(&*self.k.sys);
                    ("RunContainerError", e.to_string())
                })?;
                (proc, ExecTarget::Oci(created))
            }
            (_, _, Some(exec)) => {
                let spec = crate::init::InitSpec {
                    netns: Some(plan.netns_path.clone()),
                    uts: Some(plan.uts_path.clone()),
                    mounts,
                    argv: exec.argv,
                    env: exec.env,
                    working_dir: exec.working_dir.map(Into::into),
                    cgroups: cg.dirs().cloned().collect(),
                };
                let proc = crate::process::spawn_with(name, &self.k.init, &spec, log)
                    .map_err(|e| ("RunContainerError", e.to_string()))?;
                // The init joins its cgroups before anything else, but the start is reported only
                // once the process is surely counted there (a runtime killed right now must find it).
                if let Err(e) = cg.adopt(proc.pid()) {
                    eprintln!("stead-node: container {name:?}: {e}");
                }
                (proc, ExecTarget::Host(spec))
            }
            _ => return Err(("CreateContainerError", format!("container {name:?}: nothing to run"))),
        };
        self.seq += 1;
        let instance = self.seq;
        self.starts.insert(name.to_owned(), instance_no + 1);
        self.lifecycle.record(name, Event::Started, Instant::now(), wall_now());
        let probes = ContainerProbes::new(&c, Instant::now()).map_err(|e| config_err(e.to_string()))?;
        // An image container is Waiting (ContainerCreating) until runc runs its program, as one
        // with a postStart hook is until the hook succeeds (the container task reports both).
        let post_start = c.lifecycle.as_ref().is_some_and(|l| l.post_start.is_some())
            || matches!(spec, ExecTarget::Oci(_));
        self.lifecycle.set_started(name, probes.started() && !post_start);
        self.lifecycle.set_ready(name, probes.ready());
        let started_after_hook = probes.started();
        {
            let mut sh = lock(&self.shared);
            sh.instances.insert(name.to_owned(), instance_no);
            sh.exec.insert(name.to_owned(), spec.clone());
        }
        let handle = container::start(container::Ctx {
            k: self.k.clone(),
            pod: container::PodRef {
                namespace: self.ns.clone(),
                name: self.name.clone(),
                uid: self.uid.clone(),
            },
            container: c,
            instance,
            process: proc,
            cgroup: cg,
            oom_before,
            spec,
            probes,
            pod_ip: self.pod_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            grace: self.pod_grace(),
            events: self.tx.clone(),
        });
        self.running.insert(name.to_owned(), Running { instance, handle, post_start, started_after_hook });
        Ok(())
    }

    fn status(&self) -> PodStatus {
        let now = Instant::now();
        let mut obs = self.lifecycle.observation(now, &self.uid);
        obs.pod_ip = self.pod_ip.map(|ip| ip.to_string());
        obs.host_ip = Some(self.k.bridge_ip.to_string());
        obs.start_time = Some(self.start_time);
        for (name, _) in self.running.iter().filter(|(_, r)| r.post_start) {
            if let Some(o) = obs.containers.get_mut(name) {
                o.state = waiting_state("ContainerCreating", None);
                o.ready = false;
                o.started = false;
            }
        }
        let waiting = self
            .start_errors
            .iter()
            .map(|(name, e)| (name, (e.reason, e.message.clone())))
            .chain(containers(&self.pod).filter_map(|c| Some((&c.name, self.pulls.waiting(&c.name, now)?))))
            .collect::<Vec<_>>();
        for (name, (reason, message)) in waiting {
            let prev = obs.containers.get(name);
            let o = Observed {
                state: waiting_state(reason, Some(message)),
                last_state: prev.and_then(|p| p.last_state.clone()),
                restart_count: prev.map_or(0, |p| p.restart_count),
                ready: false,
                started: false,
            };
            obs.containers.insert(name.clone(), o);
        }
        let mut st = crate::status::pod_status(&self.pod, &obs, wall_now(), self.last.as_ref());
        if let Some(e) = &self.sandbox_error {
            st.reason = Some("SandboxError".into());
            st.message = Some(e.clone());
        }
        if !self.limit_notes.is_empty() {
            let message = self.limit_notes.values().cloned().collect::<Vec<_>>().join("; ");
            let since = self
                .last
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == LIMITS_CONDITION))
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(wall_now()));
            st.conditions.get_or_insert_with(Vec::new).push(PodCondition {
                type_: LIMITS_CONDITION.into(),
                status: "False".into(),
                reason: Some("CgroupUnavailable".into()),
                message: Some(message),
                last_transition_time: Some(since),
                ..Default::default()
            });
        }
        st
    }

    fn publish(&mut self) {
        let st = self.status();
        if self.last.as_ref() == Some(&st) {
            return;
        }
        lock(&self.shared).status = Some(st.clone());
        self.last = Some(st.clone());
        let _ = self.k.tx.send(PodStatusUpdate {
            namespace: self.ns.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            status: st,
        });
    }

    /// Everything the pod left: its cgroups (processes of `exec` sessions too), the sandbox, the
    /// address.
    async fn teardown(&mut self) {
        let (cg, sys, uid) = (self.k.cgroups.clone(), self.k.sys.clone(), self.uid.clone());
        let root = self.k.cgroup_root.clone();
        let ran_images = self.k.oci.is_ok();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = cg.kill_pod(&*sys, &uid);
            // runc made the containers' cgroups in every hierarchy, and leaves the pod's.
            if ran_images && let Err(e) = crate::oci::remove_pod_cgroups(&root, &uid) {
                eprintln!("stead-node: {e}");
            }
        })
        .await;
        if let Some(plan) = self.plan.take() {
            if let Err(e) = sandbox::teardown(&*self.k.sys, &*self.k.nl, &plan).await {
                eprintln!("stead-node: {e}");
            }
        } else {
            // A failed setup already tore down what it had made.
        }
        let _ = lock(&self.k.ipam).release(&self.uid);
        lock(&self.shared).exec.clear();
    }
}
