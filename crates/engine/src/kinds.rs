//! The kinds the engine serves, with the names kubectl users type for them.

use serde_json::Value;

pub const DEFAULT_NAMESPACE: &str = "default";

macro_rules! kinds {
    ($( $variant:ident: $api:literal, $resource:literal, $namespaced:literal, [$($alias:literal),*]; )*) => {
        /// A kind of object the store holds.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind { $($variant),* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The `kind` field.
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => stringify!($variant)),* }
            }

            /// The `apiVersion` field.
            pub fn api_version(self) -> &'static str {
                match self { $(Kind::$variant => $api),* }
            }

            /// The plural resource name (`statefulsets`).
            pub fn resource(self) -> &'static str {
                match self { $(Kind::$variant => $resource),* }
            }

            pub fn namespaced(self) -> bool {
                match self { $(Kind::$variant => $namespaced),* }
            }

            /// Short names and singular forms kubectl accepts.
            pub fn aliases(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => &[$($alias),*]),* }
            }

            pub fn from_name(kind: &str) -> Option<Kind> {
                match kind { $(stringify!($variant) => Some(Kind::$variant),)* _ => None }
            }
        }
    };
}

kinds! {
    Namespace: "v1", "namespaces", false, ["namespace", "ns"];
    ConfigMap: "v1", "configmaps", true, ["configmap", "cm"];
    Secret: "v1", "secrets", true, ["secret"];
    PersistentVolumeClaim: "v1", "persistentvolumeclaims", true, ["persistentvolumeclaim", "pvc"];
    Pod: "v1", "pods", true, ["pod", "po"];
    Service: "v1", "services", true, ["service", "svc"];
    Event: "v1", "events", true, ["event", "ev"];
    EndpointSlice: "discovery.k8s.io/v1", "endpointslices", true, ["endpointslice"];
    StatefulSet: "apps/v1", "statefulsets", true, ["statefulset", "sts"];
    Deployment: "apps/v1", "deployments", true, ["deployment", "deploy"];
    ReplicaSet: "apps/v1", "replicasets", true, ["replicaset", "rs"];
    ControllerRevision: "apps/v1", "controllerrevisions", true, ["controllerrevision"];
    NetworkPolicy: "networking.k8s.io/v1", "networkpolicies", true, ["networkpolicy", "netpol"];
    HorizontalPodAutoscaler: "autoscaling/v2", "horizontalpodautoscalers", true, ["horizontalpodautoscaler", "hpa"];
    StatefulStore: "cloudstate.io/v1alpha1", "statefulstores", true, ["statefulstore", "sstore"];
    StatefulService: "cloudstate.io/v1alpha1", "statefulservices", true, ["statefulservice", "ssvc"];
}

impl Kind {
    /// The kind a user means by `pods`, `pod`, `po`, `Pod`, `statefulsets.apps` and so on.
    pub fn lookup(word: &str) -> Option<Kind> {
        let lower = word.to_ascii_lowercase();
        let base = lower.split('.').next().unwrap_or_default();
        Kind::ALL.iter().copied().find(|k| {
            k.resource() == base || k.name().eq_ignore_ascii_case(base) || k.aliases().contains(&base)
        })
    }

    /// Of an object, from its `kind` field.
    pub fn of(object: &Value) -> Option<Kind> {
        object.get("kind").and_then(Value::as_str).and_then(Kind::from_name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_words_name_kinds() {
        for (word, kind) in [
            ("pods", Kind::Pod),
            ("po", Kind::Pod),
            ("Pod", Kind::Pod),
            ("sts", Kind::StatefulSet),
            ("statefulsets.apps", Kind::StatefulSet),
            ("ssvc", Kind::StatefulService),
            ("statefulservices", Kind::StatefulService),
            ("pvc", Kind::PersistentVolumeClaim),
        ] {
            assert_eq!(Kind::lookup(word), Some(kind), "{word}");
        }
        assert_eq!(Kind::lookup("podz"), None);
    }
}
