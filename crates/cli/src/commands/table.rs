//! `stead get`'s tables, as kubectl prints them: objects in, text out (no I/O, no clock).

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use stead_engine::Kind;

/// What a table shows besides each kind's own columns.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOptions {
    /// `-o wide`.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first.
    pub all_namespaces: bool,
    /// The header line (not repeated for `-w` events).
    pub header: bool,
}

/// The column names of a kind.
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let mut c = match kind {
        Kind::Pod => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        Kind::StatefulSet | Kind::StatefulService => vec!["NAME", "READY", "AGE"],
        Kind::Deployment => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::Service => vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"],
        Kind::PersistentVolumeClaim => vec!["NAME", "STATUS", "VOLUME", "CAPACITY", "AGE"],
        _ => vec!["NAME", "AGE"],
    };
    if wide && kind == Kind::Pod {
        c.extend(["IP", "NODE"]);
    }
    c
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// One object's cells, in [`columns`] order.
pub fn row(kind: Kind, object: &Value, wide: bool, now: Timestamp) -> Vec<String> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let age = age(object["metadata"]["creationTimestamp"].as_str(), now);
    let spec = &object["spec"];
    let status = &object["status"];
    let none = || "<none>".to_string();
    let mut r = match kind {
        Kind::Pod => {
            let statuses = status["containerStatuses"].as_array().cloned().unwrap_or_default();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
            let column = match serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object.clone()) {
                Ok(p) => stead_node::status::status_column(&p),
                Err(_) => status["phase"].as_str().unwrap_or("Unknown").to_string(),
            };
            vec![name, format!("{ready}/{total}"), column, restarts.to_string(), age]
        }
        Kind::StatefulSet | Kind::StatefulService => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            vec![name, format!("{}/{want}", int(&status["readyReplicas"])), age]
        }
        Kind::Deployment => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            vec![
                name,
                format!("{}/{want}", int(&status["readyReplicas"])),
                int(&status["updatedReplicas"]).to_string(),
                int(&status["availableReplicas"]).to_string(),
                age,
            ]
        }
        Kind::Service => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let protocol = p["protocol"].as_str().unwrap_or("TCP");
                    match text(&p["nodePort"]) {
                        Some(node) => format!("{}:{node}/{protocol}", int(&p["port"])),
                        None => format!("{}/{protocol}", int(&p["port"])),
                    }
                })
                .collect();
            vec![
                name,
                text(&spec["type"]).unwrap_or_else(|| "ClusterIP".into()),
                text(&spec["clusterIP"]).unwrap_or_else(none),
                if ports.is_empty() { none() } else { ports.join(",") },
                age,
            ]
        }
        Kind::PersistentVolumeClaim => vec![
            name,
            text(&status["phase"]).unwrap_or_else(|| "Pending".into()),
            text(&spec["volumeName"]).unwrap_or_default(),
            text(&status["capacity"]["storage"]).unwrap_or_default(),
            age,
        ],
        _ => vec![name, age],
    };
    if wide && kind == Kind::Pod {
        r.push(text(&status["podIP"]).unwrap_or_else(none));
        r.push(text(&spec["nodeName"]).unwrap_or_else(none));
    }
    r
}

/// The table of `objects` (all of `kind`), columns padded as kubectl's tab writer does.
pub fn render(kind: Kind, objects: &[Value], opts: TableOptions, now: Timestamp) -> String {
    let mut rows = Vec::new();
    if opts.header {
        let mut h: Vec<String> = columns(kind, opts.wide).into_iter().map(str::to_string).collect();
        if opts.all_namespaces {
            h.insert(0, "NAMESPACE".into());
        }
        rows.push(h);
    }
    for object in objects {
        let mut r = row(kind, object, opts.wide, now);
        if opts.all_namespaces {
            r.insert(0, object["metadata"]["namespace"].as_str().unwrap_or_default().to_string());
        }
        rows.push(r);
    }
    align(&rows)
}

/// Columns padded to their widest cell plus three spaces (as `get` prints); the last column
/// unpadded.
pub fn align(rows: &[Vec<String>]) -> String {
    align_with_gap(rows, 3)
}

/// Columns padded to their widest cell plus `gap` spaces; the last column unpadded.
pub fn align_with_gap(rows: &[Vec<String>], gap: usize) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}{:gap$}", "", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `pod/web-0`, `statefulset.apps/web`: what `-o name` prints.
pub fn resource_name(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default().to_ascii_lowercase();
    let api = object["apiVersion"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match api.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The AGE column: the time since `created`, or `<unknown>`.
pub fn age(created: Option<&str>, now: Timestamp) -> String {
    let Some(created) = created.and_then(|c| c.parse::<Timestamp>().ok()) else { return "<unknown>".into() };
    human_duration(now.as_second() - created.as_second())
}

/// kubectl's short human duration (`45s`, `3m20s`, `5h10m`, `3d4h`, `2y30d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 { format!("{d}d") } else { format!("{d}d{}h", h % 24) }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 { format!("{y}y") } else { format!("{y}y{}d", d % 365) }
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn pod(name: &str, ready: bool, restarts: i64) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:55:00Z" },
            "spec": { "nodeName": "stead", "containers": [{ "name": "app", "image": "x" }] },
            "status": {
                "phase": "Running", "podIP": "10.244.0.5",
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
                "containerStatuses": [{
                    "name": "app", "ready": ready, "restartCount": restarts, "image": "x", "imageID": "",
                    "state": { "running": { "startedAt": "2026-01-01T00:55:01Z" } }
                }]
            }
        })
    }

    #[test]
    fn pods_table_as_kubectl() {
        let opts = TableOptions { header: true, ..Default::default() };
        let text = render(Kind::Pod, &[pod("web-0", true, 0), pod("web-10", false, 3)], opts, now());
        assert_eq!(
            text,
            "NAME     READY   STATUS    RESTARTS   AGE\n\
             web-0    1/1     Running   0          5m\n\
             web-10   0/1     Running   3          5m\n"
        );
        let wide = TableOptions { header: true, wide: true, all_namespaces: true };
        let text = render(Kind::Pod, &[pod("web-0", true, 0)], wide, now());
        assert_eq!(
            text,
            "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP           NODE\n\
             default     web-0   1/1     Running   0          5m    10.244.0.5   stead\n"
        );
    }

    #[test]
    fn workload_service_and_claim_columns() {
        let sts = json!({
            "kind": "StatefulSet", "apiVersion": "apps/v1",
            "metadata": { "name": "web", "creationTimestamp": "2026-01-01T00:00:00Z" },
            "spec": { "replicas": 3 }, "status": { "readyReplicas": 2 }
        });
        assert_eq!(row(Kind::StatefulSet, &sts, false, now()), ["web", "2/3", "60m"]);
        assert_eq!(resource_name(&sts), "statefulset.apps/web");
        let deploy = json!({
            "kind": "Deployment",
            "metadata": { "name": "api" },
            "spec": { "replicas": 2 }, "status": { "readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1 }
        });
        assert_eq!(row(Kind::Deployment, &deploy, false, now()), ["api", "1/2", "2", "1", "<unknown>"]);
        let svc = json!({
            "kind": "Service", "apiVersion": "v1",
            "metadata": { "name": "web", "creationTimestamp": "2026-01-01T00:59:30Z" },
            "spec": { "clusterIP": "None", "ports": [{ "port": 80 }, { "port": 53, "protocol": "UDP", "nodePort": 30053 }] }
        });
        assert_eq!(
            row(Kind::Service, &svc, false, now()),
            ["web", "ClusterIP", "None", "80/TCP,53:30053/UDP", "30s"]
        );
        assert_eq!(resource_name(&svc), "service/web");
        let pvc = json!({
            "kind": "PersistentVolumeClaim",
            "metadata": { "name": "data-web-0", "creationTimestamp": "2026-01-01T00:58:00Z" },
            "spec": { "volumeName": "pv-1" }, "status": { "phase": "Bound", "capacity": { "storage": "1Gi" } }
        });
        assert_eq!(
            row(Kind::PersistentVolumeClaim, &pvc, false, now()),
            ["data-web-0", "Bound", "pv-1", "1Gi", "2m"]
        );
        assert_eq!(columns(Kind::ConfigMap, true), ["NAME", "AGE"]);
    }

    #[test]
    fn ages_as_kubectl_rounds_them() {
        for (s, want) in [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86_400 + 3600, "3d1h"),
            (30 * 86_400, "30d"),
            (3 * 365 * 86_400 + 86_400, "3y1d"),
            (9 * 365 * 86_400, "9y"),
        ] {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }
}
