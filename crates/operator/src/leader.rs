//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and only one
//! reconciles. Each round reads the Lease and writes it with the read `resourceVersion`, so two
//! replicas racing for it cannot both win (the loser gets 409 and stays a follower).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::Duration;

/// The Lease's name (in the operator's namespace).
pub const LEASE_NAME: &str = "stead-operator-leader";

/// Errors talking to the API server about the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot read or write lease {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Where the Lease is, who this replica is, and the timings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the Lease.
    pub duration: Duration,
    /// How often the holder renews (and a follower retries).
    pub renew_every: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: LEASE_NAME.to_owned(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// What one round does with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Wait { holder: String },
}

/// Decides a round (pure).
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let last = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match last {
        Some(t) if t.checked_add(duration).is_ok_and(|end| end > now) => Decision::Wait { holder },
        _ => Decision::TakeOver,
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    clock: fn() -> Timestamp,
}

impl LeaderElector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self { api: Api::namespaced(client, &cfg.namespace), cfg, clock: Timestamp::now }
    }

    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> Timestamp) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api { name: format!("{}/{}", self.cfg.namespace, self.cfg.name), source }
    }

    /// One round: reads the Lease and creates, renews or takes it over if it may. Returns whether
    /// this replica holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let now = (self.clock)();
        let current = self.api.get_opt(&self.cfg.name).await.map_err(|e| self.err(e))?;
        let decision = decide(current.as_ref(), &self.cfg.identity, now);
        let lease = match (decision, current) {
            (Decision::Wait { .. }, _) => return Ok(false),
            (Decision::Create, _) | (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held_spec(now, now, 0)),
                };
                return conflict_is_false(self.api.create(&PostParams::default(), &lease).await)
                    .map_err(|e| self.err(e));
            }
            (Decision::Renew, Some(mut lease)) => {
                let mut spec = lease.spec.take().unwrap_or_default();
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(self.duration_seconds());
                lease.spec = Some(spec);
                lease
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
                lease.spec = Some(self.held_spec(now, now, transitions.saturating_add(1)));
                lease
            }
        };
        conflict_is_false(self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await)
            .map_err(|e| self.err(e))
    }

    /// Gives the Lease up (on shutdown) so a follower takes over without waiting it out.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await.map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        lease.spec = Some(spec);
        conflict_is_false(self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await)
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.cfg.duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn held_spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// A write that lost the race (409) means "not leader", not an error.
fn conflict_is_false<T>(result: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()).filter(|h: &String| !h.is_empty()),
                lease_duration_seconds: Some(15),
                renew_time: Timestamp::from_second(renewed).ok().map(MicroTime),
                ..LeaseSpec::default()
            }),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, "a", at(100)), Decision::Create);
        assert_eq!(decide(Some(&lease("a", 90)), "a", at(100)), Decision::Renew);
        assert_eq!(decide(Some(&lease("b", 90)), "a", at(100)), Decision::Wait { holder: "b".into() });
        assert_eq!(decide(Some(&lease("b", 80)), "a", at(100)), Decision::TakeOver);
        assert_eq!(decide(Some(&lease("", 99)), "a", at(100)), Decision::TakeOver);
    }
}
