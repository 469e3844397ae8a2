//! One container instance: a task that owns its process and stops it, and a task that runs its
//! probes. Both report to the pod's worker.

use super::{ContainerEvent, ExecTarget, Inner, PodEvent};
use crate::cgroups::ContainerCgroup;
use crate::probe::{ContainerProbes, ProbeAction, ProbeKind};
use crate::prober::{self, Outcome};
use crate::process::ContainerProcess;
use crate::status::Exit;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use nix::sys::signal::Signal;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Stop the container: preStop, SIGTERM, `grace`, SIGKILL.
#[derive(Clone, Copy, Debug)]
pub(super) struct StopRequest {
    pub grace: Duration,
}

/// The worker's side of a running container.
pub(super) struct ContainerHandle {
    stop: Option<oneshot::Sender<StopRequest>>,
}

impl ContainerHandle {
    /// Asks the container to stop (only the first request counts).
    pub fn stop(&mut self, req: StopRequest) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(req);
        }
    }
}

/// Which pod a container belongs to, for its events.
#[derive(Clone, Debug)]
pub(super) struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    /// Publishes an event about `container` (nobody listening is fine).
    pub(super) fn record(&self, k: &Inner, container: &str, warning: bool, reason: &str, message: String) {
        let _ = k.container_events.send(ContainerEvent {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            container: container.to_owned(),
            warning,
            reason: reason.to_owned(),
            message,
        });
    }
}

pub(super) struct Ctx {
    pub k: Arc<Inner>,
    pub pod: PodRef,
    pub container: Container,
    pub instance: u64,
    pub process: ContainerProcess,
    pub cgroup: ContainerCgroup,
    pub oom_before: u64,
    pub spec: ExecTarget,
    pub probes: ContainerProbes,
    pub pod_ip: Ipv4Addr,
    /// The pod's termination grace period (for a stop after a failed postStart hook).
    pub grace: Duration,
    pub events: mpsc::UnboundedSender<PodEvent>,
}

/// Starts the container's tasks.
pub(super) fn start(ctx: Ctx) -> ContainerHandle {
    let (tx, rx) = oneshot::channel();
    let prober = Prober {
        k: ctx.k.clone(),
        pod: ctx.pod.clone(),
        c: ctx.container.clone(),
        instance: ctx.instance,
        spec: ctx.spec.clone(),
        pod_ip: ctx.pod_ip,
        events: ctx.events.clone(),
    };
    let probe_task = ctx.k.rt.spawn(probe_loop(prober, ctx.probes.clone()));
    ctx.k.rt.clone().spawn(run(ctx, rx, probe_task));
    ContainerHandle { stop: Some(tx) }
}

async fn run(mut ctx: Ctx, stop: oneshot::Receiver<StopRequest>, probe_task: tokio::task::JoinHandle<()>) {
    let mut stop = Box::pin(async { stop.await.ok() });
    let mut exited = false;
    let mut stop_open = true;
    let mut request = None;
    // An image container counts as created once runc runs its program: until then `runc exec`
    // (hooks, probes, `exec`) finds no container.
    if let ExecTarget::Oci(oci) = &ctx.spec {
        tokio::select! {
            () = oci_running(oci) => {}
            _ = ctx.process.exited() => exited = true,
            req = &mut stop => {
                stop_open = false;
                request = req;
            }
        }
        let hook = ctx.container.lifecycle.as_ref().is_some_and(|l| l.post_start.is_some());
        if !exited && request.is_none() && !hook {
            let _ = ctx.events.send(PodEvent::PostStartDone {
                container: ctx.container.name.clone(),
                instance: ctx.instance,
            });
        }
    }
    // postStart runs right after the start; the worker reports the container Waiting
    // (ContainerCreating) until it succeeds, then Running from the process's start. A failure kills
    // the container (the kubelet's FailedPostStartHook), which then restarts per the restart policy.
    if let Some(hook) = ctx.container.lifecycle.as_ref().and_then(|l| l.post_start.clone())
        && !exited
        && request.is_none()
    {
        let hook_run = run_hook(&ctx.k, &ctx.container, &hook, &ctx.spec, ctx.pod_ip, ctx.grace);
        tokio::select! {
            outcome = hook_run => match outcome.filter(|o| o.result == crate::probe::ProbeResult::Failure) {
                Some(o) => {
                    eprintln!(
                        "stead-node: container {:?}: FailedPostStartHook: {}",
                        ctx.container.name, o.message
                    );
                    let message = format!("PostStartHook failed: {}", o.message);
                    ctx.pod.record(&ctx.k, &ctx.container.name, true, "FailedPostStartHook", message);
                    request = Some(StopRequest { grace: ctx.grace });
                }
                None => {
                    let _ = ctx.events.send(PodEvent::PostStartDone {
                        container: ctx.container.name.clone(),
                        instance: ctx.instance,
                    });
                }
            },
            _ = ctx.process.exited() => exited = true,
            req = &mut stop => {
                stop_open = false;
                request = req;
            }
        }
    }
    if !exited && request.is_none() {
        request = tokio::select! {
            _ = ctx.process.exited() => None,
            req = &mut stop, if stop_open => req,
        };
    }
    // A dropped sender (`None`) only happens once the worker no longer cares; the process is then
    // killed below like any other exit.
    if let Some(req) = request {
        let deadline = tokio::time::Instant::now() + req.grace;
        if let Some(hook) = ctx.container.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) {
            let hook_run = run_hook(&ctx.k, &ctx.container, &hook, &ctx.spec, ctx.pod_ip, req.grace);
            let _ = tokio::time::timeout_at(deadline, hook_run).await;
        }
        let _ = ctx.process.signal(&*ctx.k.sys, Signal::SIGTERM);
        if tokio::time::timeout_at(deadline, ctx.process.exited()).await.is_err() {
            let _ = ctx.process.signal(&*ctx.k.sys, Signal::SIGKILL);
        }
    }
    probe_task.abort();
    // The main process is gone (or going): nothing else of the container may stay.
    if ctx.cgroup.dirs().next().is_some() {
        let (cg, sys) = (ctx.cgroup.clone(), ctx.k.sys.clone());
        let _ = tokio::task::spawn_blocking(move || cg.kill_all(&*sys, Duration::from_secs(5))).await;
    } else {
        let _ = ctx.process.signal(&*ctx.k.sys, Signal::SIGKILL);
    }
    let exit = ctx.process.wait().await.unwrap_or(Exit::Code(-1));
    // An image container killed by SIGKILL exits `runc run` with 137.
    let exit = match exit {
        Exit::Signal(9) | Exit::Code(137) if ctx.cgroup.oom_kills() > ctx.oom_before => Exit::OomKilled,
        other => other,
    };
    if let ExecTarget::Oci(oci) = &ctx.spec {
        // The stopped container and its root file system go with the instance.
        let (oci, k) = (oci.clone(), ctx.k.clone());
        let removed = tokio::task::spawn_blocking(move || oci.remove(&*k.sys)).await;
        if let Ok(Err(e)) = removed {
            eprintln!("stead-node: container {:?}: {e}", ctx.container.name);
        }
    }
    // The OOM count is read above, before the directories go; a process that joined since the kill
    // (an exec session starting) is killed too.
    let (cg, sys) = (ctx.cgroup.clone(), ctx.k.sys.clone());
    let _ = tokio::task::spawn_blocking(move || cg.kill_and_remove(&*sys)).await;
    let _ = ctx.events.send(PodEvent::Exited {
        container: ctx.container.name.clone(),
        instance: ctx.instance,
        exit,
    });
}

fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Startup => c.startup_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
    }
}

/// What the probe task of one container instance works with.
struct Prober {
    k: Arc<Inner>,
    pod: PodRef,
    c: Container,
    instance: u64,
    spec: ExecTarget,
    pod_ip: Ipv4Addr,
    events: mpsc::UnboundedSender<PodEvent>,
}

/// Returns once runc reports the container past `created` (running, or already stopped), or
/// when runc cannot say. While `runc run` has not made it yet, it waits; callers also watch the
/// process, which ends if runc fails.
async fn oci_running(oci: &crate::oci::OciContainer) {
    loop {
        let (runtime, id) = (oci.runtime.clone(), oci.id.clone());
        let state = tokio::task::spawn_blocking(move || runtime.state(&id)).await;
        match state {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(s))) if s.status == "created" => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn probe_loop(p: Prober, mut probes: ContainerProbes) {
    let Prober { k, pod, c, instance, spec, pod_ip, events } = p;
    if let ExecTarget::Oci(oci) = &spec {
        oci_running(oci).await;
    }
    while let Some(next) = probes.next_due() {
        tokio::time::sleep_until(next.into()).await;
        for kind in probes.due(Instant::now()) {
            let (Some(probe), Some(timing)) = (probe_of(&c, kind), probes.timing(kind)) else { continue };
            let outcome = run_probe(&k, &c, probe, &spec, pod_ip, timing.timeout).await;
            if outcome.result == crate::probe::ProbeResult::Failure {
                // As the kubelet does: one Unhealthy event per failed run (repeats are counted).
                let message = format!("{} probe failed: {}", kind.name(), outcome.message.trim_end());
                pod.record(&k, &c.name, true, "Unhealthy", message);
            }
            let action = probes.record(kind, outcome.result, Instant::now());
            if let ProbeAction::Restart(_) = &action {
                let message = format!(
                    "Container {} failed {} probe, will be restarted",
                    c.name,
                    kind.name().to_lowercase()
                );
                pod.record(&k, &c.name, false, "Killing", message);
            }
            if action != ProbeAction::None {
                let ev = PodEvent::Probe { container: c.name.clone(), instance, action };
                if events.send(ev).is_err() {
                    return;
                }
            }
        }
    }
}

fn exec_command(
    k: &Inner,
    c: &Container,
    spec: &ExecTarget,
    command: &[String],
) -> Option<tokio::process::Command> {
    spec.command(&k.init, &c.name, command).ok()
}

async fn run_probe(
    k: &Inner,
    c: &Container,
    probe: &Probe,
    spec: &ExecTarget,
    pod_ip: Ipv4Addr,
    timeout: Duration,
) -> Outcome {
    let ip = IpAddr::V4(pod_ip);
    if let Some(e) = &probe.exec {
        let argv = e.command.clone().unwrap_or_default();
        return match exec_command(k, c, spec, &argv) {
            Some(cmd) => prober::exec(&*k.sys, cmd, timeout).await,
            None => {
                Outcome { result: crate::probe::ProbeResult::Failure, message: "exec: bad command".into() }
            }
        };
    }
    if let Some(h) = &probe.http_get {
        return prober::http_get(h, c, ip, timeout).await;
    }
    if let Some(t) = &probe.tcp_socket {
        return prober::tcp_socket(t, c, ip, timeout).await;
    }
    if let Some(g) = &probe.grpc {
        return prober::grpc(g, ip, timeout).await;
    }
    Outcome { result: crate::probe::ProbeResult::Failure, message: "probe has no handler".into() }
}

/// Runs a lifecycle hook (postStart, preStop): `exec`, `httpGet`, `tcpSocket` or `sleep`, bounded by `limit`.
async fn run_hook(
    k: &Inner,
    c: &Container,
    hook: &LifecycleHandler,
    spec: &ExecTarget,
    pod_ip: Ipv4Addr,
    limit: Duration,
) -> Option<Outcome> {
    let ip = IpAddr::V4(pod_ip);
    if let Some(e) = &hook.exec {
        let argv = e.command.clone().unwrap_or_default();
        let cmd = exec_command(k, c, spec, &argv)?;
        return Some(prober::exec(&*k.sys, cmd, limit).await);
    }
    if let Some(h) = &hook.http_get {
        return Some(prober::http_get(h, c, ip, limit).await);
    }
    if let Some(t) = &hook.tcp_socket {
        return Some(prober::tcp_socket(t, c, ip, limit).await);
    }
    if let Some(s) = &hook.sleep {
        let d = Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)).min(limit);
        tokio::time::sleep(d).await;
    }
    None
}
