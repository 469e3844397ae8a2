//! Pod status, as the kubelet computes it (`generateAPIPodStatus`, `getPhase`, the condition
//! generators) and the STATUS column as kubectl prints it (`printPod`).
//!
//! [`pod_status`] turns what the runtime observed about each container into a `PodStatus`;
//! [`status_column`] reads any `Pod` (ours or one from a real cluster) and returns kubectl's text.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// What the runtime knows about one container instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl Observed {
    /// A container waiting with `reason` (`ContainerCreating`, `CrashLoopBackOff`, ...).
    pub fn waiting(reason: &str, message: Option<String>) -> Observed {
        Observed {
            state: waiting_state(reason, message),
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    /// A running container.
    pub fn running(started_at: Timestamp, ready: bool, started: bool) -> Observed {
        Observed {
            state: ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(Time(started_at)) }),
                ..Default::default()
            },
            last_state: None,
            restart_count: 0,
            ready,
            started,
        }
    }

    /// A terminated container; see [`terminated_state`].
    pub fn terminated(exit: Exit, started_at: Timestamp, finished_at: Timestamp) -> Observed {
        Observed {
            state: terminated_state(exit, started_at, finished_at),
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    /// Sets the previous termination and the restart count.
    pub fn after_restarts(mut self, restart_count: i32, last: Option<ContainerState>) -> Observed {
        self.restart_count = restart_count;
        self.last_state = last;
        self
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal; the exit code is reported as `128 + signal`, as container runtimes do.
    Signal(i32),
    /// Killed by the OOM killer (SIGKILL).
    OomKilled,
}

/// A waiting state.
pub fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.to_owned()), message }),
        ..Default::default()
    }
}

/// A terminated state with the reason a container runtime reports: `Completed`, `Error` or `OOMKilled`.
pub fn terminated_state(exit: Exit, started_at: Timestamp, finished_at: Timestamp) -> ContainerState {
    let (exit_code, signal, reason) = match exit {
        Exit::Code(0) => (0, None, "Completed"),
        Exit::Code(c) => (c, None, "Error"),
        Exit::Signal(s) => (s.saturating_add(128), Some(s), "Error"),
        Exit::OomKilled => (137, Some(9), "OOMKilled"),
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            signal,
            reason: Some(reason.to_owned()),
            started_at: Some(Time(started_at)),
            finished_at: Some(Time(finished_at)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Everything [`pod_status`] needs besides the spec.
#[derive(Clone, Debug, Default)]
pub struct PodObservation {
    /// Per container name (init and app containers share one namespace of names).
    pub containers: BTreeMap<String, Observed>,
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub start_time: Option<Timestamp>,
    /// The pod will not run again (deleted and stopped, or failed for good).
    pub terminal: bool,
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn terminated(s: &ContainerState) -> Option<&ContainerStateTerminated> {
    s.terminated.as_ref()
}

/// The kubelet's `getPhase`.
pub fn phase(spec: &PodSpec, obs: &PodObservation) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    let get = |c: &Container| obs.containers.get(&c.name);
    let last_terminated = |o: &Observed| o.last_state.as_ref().and_then(terminated).cloned();
    for c in spec.init_containers.iter().flatten().filter(|c| !is_sidecar(c)) {
        match get(c) {
            None => pending_init += 1,
            Some(o) if o.state.running.is_some() => pending_init += 1,
            Some(o) if o.state.terminated.is_some() => {
                if terminated(&o.state).is_some_and(|t| t.exit_code != 0) {
                    failed_init += 1;
                }
            }
            Some(o) if o.state.waiting.is_some() => match last_terminated(o) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            },
            Some(_) => pending_init += 1,
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in spec.init_containers.iter().flatten().filter(|c| is_sidecar(c)) {
        match get(c) {
            None => unknown += 1,
            Some(o) if o.state.running.is_some() => {
                if !o.started {
                    pending_init += 1;
                }
                running += 1;
            }
            Some(o) if o.state.terminated.is_some() => {}
            Some(o) if o.state.waiting.is_some() => {
                if last_terminated(o).is_none() {
                    pending_init += 1;
                    waiting += 1;
                }
            }
            Some(_) => {
                pending_init += 1;
                unknown += 1;
            }
        }
    }
    for c in &spec.containers {
        match get(c) {
            None => unknown += 1,
            Some(o) if o.state.running.is_some() => running += 1,
            Some(o) if o.state.terminated.is_some() => {
                stopped += 1;
                if terminated(&o.state).is_some_and(|t| t.exit_code == 0) {
                    succeeded += 1;
                }
            }
            Some(o) if o.state.waiting.is_some() => {
                if last_terminated(o).is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            Some(_) => unknown += 1,
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    let any_regular_started =
        spec.containers.iter().filter_map(get).any(|o| {
            o.state.running.is_some() || o.state.terminated.is_some() || last_terminated(o).is_some()
        });
    if (pending_init > 0 && !any_regular_started) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if obs.terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Timestamp,
    previous: Option<&PodStatus>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(*now));
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(since),
        ..Default::default()
    }
}

/// Init containers that have not completed (or, for sidecars, started).
fn incomplete_inits<'a>(spec: &'a PodSpec, obs: &PodObservation) -> Vec<&'a str> {
    let complete = |c: &Container| {
        let o = obs.containers.get(&c.name);
        if is_sidecar(c) {
            o.is_some_and(|o| o.started)
        } else {
            o.and_then(|o| terminated(&o.state)).is_some_and(|t| t.exit_code == 0)
        }
    };
    spec.init_containers.iter().flatten().filter(|c| !complete(c)).map(|c| c.name.as_str()).collect()
}

fn names_message(what: &str, names: &[&str]) -> String {
    format!("containers with {what} status: [{}]", names.join(" "))
}

/// The kubelet's pod status for `pod` (its spec) from what the runtime observed.
///
/// `now` stamps conditions that changed since `previous` (pass the last status to keep their times).
pub fn pod_status(
    pod: &Pod,
    obs: &PodObservation,
    now: Timestamp,
    previous: Option<&PodStatus>,
) -> PodStatus {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let phase = phase(spec, obs);
    let incomplete = incomplete_inits(spec, obs);
    let init_pending = !incomplete.is_empty();
    let status_of = |c: &Container, default_reason: &str| -> ContainerStatus {
        let o =
            obs.containers.get(&c.name).cloned().unwrap_or_else(|| Observed::waiting(default_reason, None));
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: String::new(),
            ready: o.ready,
            restart_count: o.restart_count,
            started: Some(o.started),
            state: Some(o.state),
            last_state: Some(o.last_state.unwrap_or_default()),
            ..Default::default()
        }
    };
    let init_statuses: Vec<ContainerStatus> =
        spec.init_containers.iter().flatten().map(|c| status_of(c, "PodInitializing")).collect();
    let app_reason = if init_pending { "PodInitializing" } else { "ContainerCreating" };
    let app_statuses: Vec<ContainerStatus> =
        spec.containers.iter().map(|c| status_of(c, app_reason)).collect();

    let succeeded = phase == "Succeeded";
    let initialized = if succeeded || incomplete.is_empty() {
        condition("Initialized", true, succeeded.then_some("PodCompleted"), None, &now, previous)
    } else {
        let msg = names_message("incomplete", &incomplete);
        condition("Initialized", false, Some("ContainersNotInitialized"), Some(msg), &now, previous)
    };
    let unready: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .chain(spec.containers.iter())
        .filter(|c| !obs.containers.get(&c.name).is_some_and(|o| o.ready))
        .map(|c| c.name.as_str())
        .collect();
    let (ready_ok, ready_reason, ready_msg) = if succeeded {
        (false, Some("PodCompleted"), None)
    } else if !incomplete.is_empty() {
        (false, Some("ContainersNotInitialized"), Some(names_message("incomplete", &incomplete)))
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (false, Some("ContainersNotReady"), Some(names_message("unready", &unready)))
    };
    let conditions = vec![
        condition("PodScheduled", true, None, None, &now, previous),
        initialized,
        condition("ContainersReady", ready_ok, ready_reason, ready_msg.clone(), &now, previous),
        condition("Ready", ready_ok, ready_reason, ready_msg, &now, previous),
    ];
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: obs.host_ip.clone(),
        pod_ip: obs.pod_ip.clone(),
        pod_ips: obs.pod_ip.clone().map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip }]),
        start_time: obs.start_time.map(Time),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(app_statuses),
        qos_class: Some(qos_class(spec).to_owned()),
        ..Default::default()
    }
}

/// The pod's QoS class, simplified to cpu and memory as the kubelet does.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all: Vec<&Container> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let req = requests.and_then(|m| m.get(res));
            let lim = limits.and_then(|m| m.get(res));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (Some(a), Some(b)) if a == b => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// kubectl's STATUS column for `pod` (`printPod` in kubectl's printers).
pub fn status_column(pod: &Pod) -> String {
    let empty_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let empty_status = PodStatus::default();
    let status = pod.status.as_ref().unwrap_or(&empty_status);
    let mut reason =
        status.reason.clone().filter(|r| !r.is_empty()).or_else(|| status.phase.clone()).unwrap_or_default();
    let inits: BTreeMap<&str, &Container> =
        spec.init_containers.iter().flatten().map(|c| (c.name.as_str(), c)).collect();
    let n_init = spec.init_containers.as_ref().map_or(0, Vec::len);

    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().flatten().enumerate() {
        let state = cs.state.clone().unwrap_or_default();
        let term = state.terminated.as_ref();
        if term.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if inits.get(cs.name.as_str()).is_some_and(|c| is_sidecar(c)) && cs.started == Some(true) {
            continue;
        }
        if let Some(t) = term {
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None => match t.signal.filter(|s| *s != 0) {
                    Some(s) => format!("Init:Signal:{s}"),
                    None => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }

    let initialized_true =
        status.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized_true {
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            let state = cs.state.clone().unwrap_or_default();
            if let Some(r) = state.waiting.as_ref().and_then(|w| w.reason.clone()).filter(|r| !r.is_empty()) {
                reason = r;
            } else if let Some(t) = state.terminated.as_ref() {
                reason = match t.reason.clone().filter(|r| !r.is_empty()) {
                    Some(r) => r,
                    None => match t.signal.filter(|s| *s != 0) {
                        Some(s) => format!("Signal:{s}"),
                        None => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if ready { "Running".into() } else { "NotReady".into() };
        }
    }

    let phase_terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    if pod.metadata.deletion_timestamp.is_some() && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".into();
    } else if pod.metadata.deletion_timestamp.is_some() && !phase_terminal {
        reason = "Terminating".into();
    }
    reason
}

#[cfg(test)]
mod tests;
