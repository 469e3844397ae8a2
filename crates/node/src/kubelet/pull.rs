//! The pull stage of a pod worker: before a container of an image runtime starts, its image is
//! made present ([`crate::images::ImageService::ensure`]) on a task of its own, so the worker
//! keeps handling events; a stop aborts the task.
//!
//! The kubelet's behaviour (`images/image_manager.go`, `kuberuntime_container.go`):
//! - Events `Pulling` (`Pulling image "x"`), `Pulled` (`Successfully pulled image "x" in 1.2s
//!   (1.3s including waiting). Image size: N bytes.`, or `Container image "x" already present on
//!   machine`), on a failure `Failed` (`Failed to pull image "x": ...`) and `Failed`
//!   (`Error: ErrImagePull`), while backing off `BackOff` (`Back-off pulling image "x"`) and
//!   `Failed` (`Error: ImagePullBackOff`).
//! - Waiting reasons: `ErrImagePull` with the error, from the failure until the worker's next sync
//!   ([`ERR_SHOWN`] later), then `ImagePullBackOff` (`Back-off pulling image "x": ErrImagePull:
//!   ...`) until the retry: 10 s after the first failure, doubling to 5 min
//!   ([`crate::backoff::CreateBackoff`]). `ErrImageNeverPull` (`imagePullPolicy: Never` without
//!   the image) is retried every 10 s, as the kubelet's pod worker syncs a failed pod again.
//! - The pod stays Pending: these are Waiting states, never a failed pod.
//! - Every start pulls again per the policy (`Always` resolves the reference at each restart, as
//!   the kubelet does); a pulled image is used by the start that asked for it.

use super::container::PodRef;
use super::{Inner, PodEvent};
use crate::backoff::{CreateBackoff, Retry};
use crate::env::ObjectLookup;
use crate::images::{EnsureError, Ensured};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stead_image::auth::Keyring;
use stead_image::container::PullPolicy;
use stead_image::pull::Image;
use stead_image::reference::ImageRef;
use tokio::sync::mpsc;

/// How long `ErrImagePull` shows before `ImagePullBackOff`: the worker's next look at the pod.
pub const ERR_SHOWN: Duration = Duration::from_secs(1);

/// The outcome of one pull task, for the worker.
#[derive(Debug)]
pub(crate) struct PullOutcome {
    pub attempt: u64,
    pub result: Result<Ensured, EnsureError>,
}

#[derive(Default)]
struct ContainerPull {
    attempt: u64,
    /// The pull running now.
    task: Option<tokio::task::JoinHandle<()>>,
    /// The image pulled for the next start.
    ready: Option<Arc<Image>>,
    failure: Option<Failure>,
    backoff: CreateBackoff,
}

struct Failure {
    reason: &'static str,
    message: String,
    /// The image as the container names it.
    image: String,
    /// When `ErrImagePull` gives way to `ImagePullBackOff` (`None`: it does not).
    backoff_from: Option<Instant>,
    backoff_reported: bool,
}

/// Every container's pull stage in one pod.
#[derive(Default)]
pub(super) struct Pulls {
    containers: HashMap<String, ContainerPull>,
}

/// Go's `time.Duration` text truncated to milliseconds, as the kubelet's messages show it
/// (`523ms`, `1.234s`, `2m3.5s`).
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let secs = format!("{}.{:03}", rest / 1000, rest % 1000);
    let secs = secs.trim_end_matches('0').trim_end_matches('.');
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// The pod's `imagePullSecrets` as a keyring, and a key naming them. A Secret that is missing or
/// not a docker config is skipped with a warning, as the kubelet does (the pull may still work).
pub(super) fn pull_secrets(pod: &Pod, lookup: &dyn ObjectLookup) -> (Keyring, String) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut keyring = Keyring::new();
    let mut names = Vec::new();
    let refs = pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten());
    for r in refs {
        let name = r.name.as_str();
        if name.is_empty() {
            continue;
        }
        match lookup.secret(ns, name) {
            Ok(Some(secret)) => {
                let data = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                match keyring.add_secret(&format!("{ns}/{name}"), secret.type_.as_deref(), &data) {
                    Ok(()) => names.push(format!("{ns}/{name}")),
                    Err(e) => eprintln!("stead-node: pod {ns}/{}: imagePullSecrets: {e}", pod_name(pod)),
                }
            }
            Ok(None) => eprintln!(
                "stead-node: pod {ns}/{}: imagePullSecrets: secret {ns}/{name} does not exist; the pull may not succeed",
                pod_name(pod)
            ),
            Err(e) => {
                eprintln!("stead-node: pod {ns}/{}: imagePullSecrets: secret {ns}/{name}: {e}", pod_name(pod))
            }
        }
    }
    (keyring, names.join(","))
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

impl Pulls {
    /// Whether `container` must not be started now: its pull runs, or backs off.
    pub fn busy(&self, container: &str, now: Instant) -> bool {
        self.containers
            .get(container)
            .is_some_and(|c| c.task.is_some() || (c.failure.is_some() && c.backoff.in_backoff(now)))
    }

    /// The image pulled for this start, if the pull is done.
    pub fn take_ready(&mut self, container: &str) -> Option<Arc<Image>> {
        self.containers.get_mut(container)?.ready.take()
    }

    /// The Waiting reason and message of a container whose pull failed.
    pub fn waiting(&self, container: &str, now: Instant) -> Option<(&'static str, String)> {
        let f = self.containers.get(container)?.failure.as_ref()?;
        match f.backoff_from {
            Some(from) if now >= from => Some((
                "ImagePullBackOff",
                format!("Back-off pulling image {:?}: {}: {}", f.image, f.reason, f.message),
            )),
            _ => Some((f.reason, f.message.clone())),
        }
    }

    /// When the worker must look again: a back-off ending, or `ErrImagePull` turning into
    /// `ImagePullBackOff`.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.containers
            .values()
            .filter(|c| c.task.is_none())
            .flat_map(|c| {
                let shown = c.failure.as_ref().filter(|f| !f.backoff_reported).and_then(|f| f.backoff_from);
                c.failure.as_ref().and(c.backoff.retry_at()).into_iter().chain(shown)
            })
            .min()
    }

    /// Records the `BackOff` events of containers whose `ErrImagePull` has turned into
    /// `ImagePullBackOff`.
    pub fn report_backoffs(&mut self, k: &Inner, pod: &PodRef, now: Instant) {
        for (name, c) in &mut self.containers {
            let Some(f) = c.failure.as_mut() else { continue };
            if f.backoff_reported
                || f.backoff_from.is_none_or(|from| now < from)
                || !c.backoff.in_backoff(now)
            {
                continue;
            }
            f.backoff_reported = true;
            pod.record(k, name, false, "BackOff", format!("Back-off pulling image {:?}", f.image));
            pod.record(k, name, true, "Failed", "Error: ImagePullBackOff".into());
        }
    }

    /// Starts the pull of `container`'s image on a task that reports to the worker.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        k: &Arc<Inner>,
        pod: &PodRef,
        container: &str,
        image_text: &str,
        image: ImageRef,
        policy: PullPolicy,
        secrets: (Keyring, String),
        events: mpsc::UnboundedSender<PodEvent>,
    ) {
        let c = self.containers.entry(container.to_owned()).or_default();
        c.attempt += 1;
        c.ready = None;
        let attempt = c.attempt;
        let (k2, pod2, name, text) = (k.clone(), pod.clone(), container.to_owned(), image_text.to_owned());
        c.task = Some(k.rt.spawn(async move {
            let (keyring, key) = secrets;
            let pulling = || pod2.record(&k2, &name, false, "Pulling", format!("Pulling image {text:?}"));
            let result = k2.images.ensure(&image, policy, &keyring, &key, pulling).await;
            let _ =
                events.send(PodEvent::Pulled { container: name, outcome: PullOutcome { attempt, result } });
        }));
    }

    /// A pull task's outcome: events, the image for the start, or the failure and its back-off.
    pub fn finish(
        &mut self,
        k: &Inner,
        pod: &PodRef,
        container: &str,
        image_text: &str,
        outcome: PullOutcome,
    ) {
        let Some(c) = self.containers.get_mut(container).filter(|c| c.attempt == outcome.attempt) else {
            return;
        };
        c.task = None;
        let now = Instant::now();
        match outcome.result {
            Ok(e) => {
                let message = if e.pulled {
                    format!(
                        "Successfully pulled image {image_text:?} in {} ({} including waiting). Image size: {} bytes.",
                        go_duration(e.pull_time),
                        go_duration(e.total_time),
                        e.size
                    )
                } else {
                    format!("Container image {image_text:?} already present on machine")
                };
                pod.record(k, container, false, "Pulled", message);
                c.ready = Some(e.image);
                c.failure = None;
                c.backoff = CreateBackoff::default();
            }
            Err(EnsureError::NeverPull { .. }) => {
                let message =
                    format!("Container image {image_text:?} is not present with pull policy of Never");
                pod.record(k, container, true, "ErrImageNeverPull", message.clone());
                pod.record(k, container, true, "Failed", "Error: ErrImageNeverPull".into());
                c.backoff.record_failure(now, Retry::Steady);
                c.failure = Some(Failure {
                    reason: "ErrImageNeverPull",
                    message,
                    image: image_text.to_owned(),
                    backoff_from: None,
                    backoff_reported: false,
                });
            }
            Err(EnsureError::Pull(error)) => {
                pod.record(
                    k,
                    container,
                    true,
                    "Failed",
                    format!("Failed to pull image {image_text:?}: {error}"),
                );
                pod.record(k, container, true, "Failed", "Error: ErrImagePull".into());
                c.backoff.record_failure(now, Retry::Doubling);
                c.failure = Some(Failure {
                    reason: "ErrImagePull",
                    message: error,
                    image: image_text.to_owned(),
                    backoff_from: Some(now + ERR_SHOWN),
                    backoff_reported: false,
                });
            }
        }
    }

    /// Aborts every pull (the pod stops).
    pub fn cancel_all(&mut self) {
        for c in self.containers.values_mut() {
            if let Some(t) = c.task.take() {
                t.abort();
            }
            c.ready = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        let cases = [
            (0, "0s"),
            (523, "523ms"),
            (1000, "1s"),
            (1234, "1.234s"),
            (1500, "1.5s"),
            (123_500, "2m3.5s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want, "{ms} ms");
        }
        assert_eq!(go_duration(Duration::from_micros(1_234_567)), "1.234s");
    }
}
