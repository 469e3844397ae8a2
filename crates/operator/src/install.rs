//! `stead operator install` / `uninstall`: the install plan (CRDs, namespace, RBAC, Deployment,
//! all from `stead_render`), applied by server-side apply in dependency order, and the kustomize
//! folder generated from the same plan.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value as J;
use std::time::Duration;
use stead_render::{Format, RenderOptions};

/// The field manager of install's applies (the controller's own is `stead-operator`).
pub const INSTALL_FIELD_MANAGER: &str = "stead-install";
/// How long install waits for the CRDs to be Established.
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors installing or uninstalling.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("install object {0} has no apiVersion, kind or metadata.name")]
    Incomplete(String),
    #[error("install object {api_version} {kind} is not a kind install knows")]
    UnknownKind { api_version: String, kind: String },
    #[error("cannot {verb} {object}: {source}")]
    Api {
        verb: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("customresourcedefinition {name} was not established within {seconds} s")]
    NotEstablished { name: String, seconds: u64 },
    /// (render's output error type is private to it; its text is kept)
    #[error("cannot write yaml: {0}")]
    Output(String),
}

/// Everything install applies, in render's order (CRDs first).
pub fn plan(opts: &RenderOptions) -> Vec<J> {
    stead_render::install_manifests(opts)
}

/// One object of the plan, located.
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub resource: ApiResource,
}

impl Target {
    /// `kind/name`, as kubectl prints objects.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        }
    }

    /// Apply order: CRDs, then the namespace, then identity and RBAC, then the Deployment.
    fn rank(&self) -> u8 {
        match self.kind.as_str() {
            "CustomResourceDefinition" => 0,
            "Namespace" => 1,
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => 2,
            _ => 3,
        }
    }
}

/// Locates a plan object (a fixed table: install needs no discovery round trip).
pub fn target(object: &J) -> Result<Target, InstallError> {
    let text = |pointer: &str| object.pointer(pointer).and_then(J::as_str);
    let (Some(api_version), Some(kind), Some(name)) =
        (text("/apiVersion"), text("/kind"), text("/metadata/name"))
    else {
        return Err(InstallError::Incomplete(object.to_string().chars().take(80).collect()));
    };
    fn ar<K: kube::Resource<DynamicType = ()> + k8s_openapi::Resource>()
    -> (&'static str, &'static str, ApiResource) {
        (K::API_VERSION, K::KIND, ApiResource::erase::<K>(&()))
    }
    let known = [
        ar::<CustomResourceDefinition>(),
        ar::<Namespace>(),
        ar::<ServiceAccount>(),
        ar::<ClusterRole>(),
        ar::<ClusterRoleBinding>(),
        ar::<Role>(),
        ar::<RoleBinding>(),
        ar::<Deployment>(),
    ];
    let resource =
        known.into_iter().find(|(v, k, _)| *v == api_version && *k == kind).map(|(_, _, r)| r).ok_or_else(
            || InstallError::UnknownKind { api_version: api_version.into(), kind: kind.into() },
        )?;
    Ok(Target {
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: text("/metadata/namespace").map(str::to_owned),
        resource,
    })
}

/// The plan in apply order (stable within a rank).
pub fn ordered(plan: &[J]) -> Result<Vec<(Target, &J)>, InstallError> {
    let mut out = plan.iter().map(|o| Ok((target(o)?, o))).collect::<Result<Vec<_>, InstallError>>()?;
    out.sort_by_key(|(t, _)| t.rank());
    Ok(out)
}

/// Applies the plan by server-side apply; after the CRDs, waits until they are Established.
/// With `dry_run` the server only validates (`dryRun=All`) and nothing is waited for. Returns
/// what was applied, as `kind/name`.
pub async fn install(client: &Client, plan: &[J], dry_run: bool) -> Result<Vec<String>, InstallError> {
    let mut params = PatchParams::apply(INSTALL_FIELD_MANAGER).force();
    params.dry_run = dry_run;
    let mut done = Vec::new();
    let mut crds: Vec<String> = Vec::new();
    for (target, object) in ordered(plan)? {
        if target.rank() > 0 && !crds.is_empty() {
            for name in std::mem::take(&mut crds) {
                wait_established(client, &name).await?;
            }
        }
        target
            .api(client)
            .patch(&target.name, &params, &Patch::Apply(object))
            .await
            .map_err(|source| InstallError::Api { verb: "apply", object: target.reference(), source })?;
        if target.rank() == 0 && !dry_run {
            crds.push(target.name.clone());
        }
        done.push(target.reference());
    }
    for name in crds {
        wait_established(client, &name).await?;
    }
    Ok(done)
}

async fn wait_established(client: &Client, name: &str) -> Result<(), InstallError> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let deadline = tokio::time::Instant::now() + ESTABLISH_TIMEOUT;
    loop {
        let crd = api.get(name).await.map_err(|source| InstallError::Api {
            verb: "read",
            object: format!("customresourcedefinition/{name}"),
            source,
        })?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(InstallError::NotEstablished {
                name: name.into(),
                seconds: ESTABLISH_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes what install applied, in reverse order. CRDs are kept unless `keep_crds_and_data` is
/// false: deleting a CRD deletes every StatefulService and StatefulStore in the cluster (and so
/// their children). Objects already gone are fine. Returns what was deleted.
pub async fn uninstall(
    client: &Client,
    plan: &[J],
    keep_crds_and_data: bool,
) -> Result<Vec<String>, InstallError> {
    let mut done = Vec::new();
    for (target, _) in ordered(plan)?.into_iter().rev() {
        if keep_crds_and_data && target.rank() == 0 {
            continue;
        }
        match target.api(client).delete(&target.name, &DeleteParams::background()).await {
            Ok(_) => done.push(target.reference()),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(InstallError::Api { verb: "delete", object: target.reference(), source });
            }
        }
    }
    Ok(done)
}

/// The header of every generated deploy/ file.
pub const GENERATED: &str = "# Generated from stead_render::install_manifests; do not edit.\n\
# Regenerate: STEAD_UPDATE_DEPLOY=1 cargo test -p stead-operator --test deploy\n";

/// The kustomize folder for `plan`: (file name, contents), `kustomization.yaml` first.
pub fn kustomize(plan: &[J]) -> Result<Vec<(String, String)>, InstallError> {
    let mut files = Vec::new();
    let mut resources = Vec::new();
    for (target, object) in ordered(plan)? {
        let file = format!("{}-{}.yaml", target.kind.to_ascii_lowercase(), target.name);
        let yaml = stead_render::to_string(std::slice::from_ref(object), Format::Yaml)
            .map_err(|e| InstallError::Output(e.to_string()))?;
        resources.push(format!("  - {file}\n"));
        files.push((file, format!("{GENERATED}{yaml}")));
    }
    let kustomization = format!(
        "{GENERATED}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{}",
        resources.concat()
    );
    files.insert(0, ("kustomization.yaml".to_owned(), kustomization));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_orders_crds_namespace_rbac_deployment() {
        let plan = plan(&RenderOptions::default());
        let kinds: Vec<_> = ordered(&plan).unwrap().into_iter().map(|(t, _)| t.kind).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "CustomResourceDefinition",
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Deployment"
            ]
        );
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let err = target(&serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}));
        assert!(matches!(err, Err(InstallError::UnknownKind { .. })));
    }
}
