//! The per-pod `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`, as the kubelet generates them.
//!
//! - Hostname: `spec.hostname` or the pod name, truncated to 63 characters (trailing `-`/`.` trimmed);
//!   with `spec.subdomain` the domain is `<subdomain>.<namespace>.svc.<clusterDomain>`;
//!   `setHostnameAsFQDN` makes the hostname the full name.
//! - Hosts: the kubelet's managed file, with the pod's own line and `hostAliases`.
//! - resolv.conf: `dnsPolicy` `ClusterFirst` (the default; also `ClusterFirstWithHostNet`), `Default`
//!   (the host's file) or `None`, merged with `dnsConfig` as the kubelet does. Local limitation: under
//!   `ClusterFirst` the host's search domains are not appended (the node has no meaningful ones).

use k8s_openapi::api::core::v1::Pod;
use std::net::IpAddr;

/// Cluster DNS settings of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// The cluster DNS server(s) (`--cluster-dns`).
    pub nameservers: Vec<IpAddr>,
    /// `cluster.local` unless configured.
    pub cluster_domain: String,
    /// The host's resolv.conf text, for `dnsPolicy: Default`.
    pub host_resolv_conf: String,
}

/// A pod whose files cannot be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodFilesError {
    #[error(
        "pod {pod:?}: spec.{field} {value:?} is not a valid DNS label (lower-case alphanumerics and '-', at most 63 characters, starting and ending alphanumeric)"
    )]
    InvalidLabel { pod: String, field: &'static str, value: String },
    #[error("pod {pod:?}: hostname {value:?} is empty after truncation to 63 characters")]
    EmptyHostname { pod: String, value: String },
    #[error(
        "pod {pod:?}: fully qualified hostname {value:?} is longer than 64 characters (setHostnameAsFQDN)"
    )]
    FqdnTooLong { pod: String, value: String },
    #[error(
        "pod {pod:?}: unknown dnsPolicy {value:?}: expected ClusterFirst, ClusterFirstWithHostNet, Default or None"
    )]
    UnknownDnsPolicy { pod: String, value: String },
    #[error("pod {pod:?}: dnsPolicy None needs dnsConfig.nameservers")]
    NoNameservers { pod: String },
}

/// A pod's hostname and (with a subdomain) its domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodHostname {
    /// What `sethostname` gets (the FQDN when `setHostnameAsFQDN`).
    pub hostname: String,
    /// The short name, used in `/etc/hosts`.
    pub short: String,
    /// `<subdomain>.<namespace>.svc.<clusterDomain>`.
    pub domain: Option<String>,
}

fn pod_ref(pod: &Pod) -> String {
    format!("{}/{}", namespace(pod), pod.metadata.name.as_deref().unwrap_or(""))
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// RFC 1123 label, as Kubernetes validates it.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The kubelet's `GeneratePodHostNameAndDomain` plus `setHostnameAsFQDN`.
pub fn pod_hostname(pod: &Pod, cluster_domain: &str) -> Result<PodHostname, PodFilesError> {
    let spec = pod.spec.as_ref();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let mut hostname = pod_name.clone();
    if let Some(h) = spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()) {
        if !is_dns1123_label(h) {
            return Err(PodFilesError::InvalidLabel {
                pod: pod_ref(pod),
                field: "hostname",
                value: h.to_owned(),
            });
        }
        hostname = h.to_owned();
    }
    if hostname.len() > 63 {
        let truncated: String = hostname.chars().take(63).collect();
        let trimmed = truncated.trim_end_matches(['-', '.']);
        if trimmed.is_empty() {
            return Err(PodFilesError::EmptyHostname { pod: pod_ref(pod), value: hostname });
        }
        hostname = trimmed.to_owned();
    }
    let domain = match spec.and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty()) {
        Some(sub) if !is_dns1123_label(sub) => {
            return Err(PodFilesError::InvalidLabel {
                pod: pod_ref(pod),
                field: "subdomain",
                value: sub.to_owned(),
            });
        }
        Some(sub) => Some(format!("{sub}.{}.svc.{cluster_domain}", namespace(pod))),
        None => None,
    };
    let short = hostname.clone();
    let fqdn = spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    if let (true, Some(d)) = (fqdn, &domain) {
        hostname = format!("{short}.{d}");
        if hostname.len() > 64 {
            return Err(PodFilesError::FqdnTooLong { pod: pod_ref(pod), value: hostname });
        }
    }
    Ok(PodHostname { hostname, short, domain })
}

/// `/etc/hostname`.
pub fn hostname_file(name: &PodHostname) -> String {
    format!("{}\n", name.hostname)
}

/// The kubelet's managed `/etc/hosts`.
pub fn hosts_file(pod: &Pod, name: &PodHostname, pod_ips: &[IpAddr]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match &name.domain {
            Some(d) => out.push_str(&format!("{ip}\t{}.{d}\t{}\n", name.short, name.short)),
            None => out.push_str(&format!("{ip}\t{}\n", name.short)),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref()).filter(|a| !a.is_empty());
    if let Some(aliases) = aliases {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.clone().unwrap_or_default().join("\t")));
        }
    }
    out
}

#[derive(Default)]
struct Resolv {
    nameservers: Vec<String>,
    searches: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.nameservers.extend(words.next().map(str::to_owned)),
            Some("search" | "domain") => r.searches = words.map(str::to_owned).collect(),
            Some("options") => r.options.extend(words.map(split_option)),
            _ => {}
        }
    }
    r
}

fn split_option(o: &str) -> (String, Option<String>) {
    match o.split_once(':') {
        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
        None => (o.to_owned(), None),
    }
}

/// `/etc/resolv.conf` for the pod.
pub fn resolv_conf(pod: &Pod, dns: &DnsSettings) -> Result<String, PodFilesError> {
    let spec = pod.spec.as_ref();
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let ns = namespace(pod);
    let cd = &dns.cluster_domain;
    let mut r = match policy {
        "ClusterFirst" | "ClusterFirstWithHostNet" => Resolv {
            nameservers: dns.nameservers.iter().map(IpAddr::to_string).collect(),
            searches: vec![format!("{ns}.svc.{cd}"), format!("svc.{cd}"), cd.clone()],
            options: vec![("ndots".into(), Some("5".into()))],
        },
        "Default" => parse_resolv(&dns.host_resolv_conf),
        "None" => Resolv::default(),
        other => return Err(PodFilesError::UnknownDnsPolicy { pod: pod_ref(pod), value: other.to_owned() }),
    };
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        for n in cfg.nameservers.iter().flatten() {
            if !r.nameservers.contains(n) {
                r.nameservers.push(n.clone());
            }
        }
        for s in cfg.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in cfg.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            r.options.retain(|(k, _)| *k != name);
            r.options.push((name, o.value.clone()));
        }
    }
    if policy == "None" && r.nameservers.is_empty() {
        return Err(PodFilesError::NoNameservers { pod: pod_ref(pod) });
    }
    // The resolver reads at most 3 nameservers and 32 search domains.
    r.nameservers.truncate(3);
    r.searches.truncate(32);
    let mut out = String::new();
    for n in &r.nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !r.searches.is_empty() {
        out.push_str(&format!("search {}\n", r.searches.join(" ")));
    }
    if !r.options.is_empty() {
        let opts: Vec<String> = r
            .options
            .iter()
            .map(|(k, v)| v.as_ref().map_or_else(|| k.clone(), |v| format!("{k}:{v}")))
            .collect();
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-1", "namespace": "shop"}, "spec": spec}))
            .expect("pod")
    }

    fn dns() -> DnsSettings {
        DnsSettings {
            nameservers: vec!["10.244.0.1".parse().expect("ip")],
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: "# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:1\n"
                .into(),
        }
    }

    #[test]
    fn statefulset_style_pod() {
        let p = pod(json!({"containers": [], "hostname": "web-1", "subdomain": "web"}));
        let name = pod_hostname(&p, "cluster.local").expect("hostname");
        assert_eq!(name.hostname, "web-1");
        assert_eq!(name.domain.as_deref(), Some("web.shop.svc.cluster.local"));
        assert_eq!(hostname_file(&name), "web-1\n");
        assert_eq!(
            hosts_file(&p, &name, &["10.244.0.11".parse().expect("ip")]),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.0.11\tweb-1.web.shop.svc.cluster.local\tweb-1\n"
        );
        assert_eq!(
            resolv_conf(&p, &dns()).expect("resolv"),
            "nameserver 10.244.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn plain_pod_and_aliases() {
        let p =
            pod(json!({"containers": [], "hostAliases": [{"ip": "127.0.0.2", "hostnames": ["foo", "bar"]}]}));
        let name = pod_hostname(&p, "cluster.local").expect("hostname");
        assert_eq!((name.hostname.as_str(), name.domain.clone()), ("web-1", None));
        let hosts = hosts_file(&p, &name, &["10.244.0.11".parse().expect("ip")]);
        assert!(
            hosts.ends_with("10.244.0.11\tweb-1\n\n# Entries added by HostAliases.\n127.0.0.2\tfoo\tbar\n"),
            "{hosts}"
        );
    }

    #[test]
    fn fqdn_and_truncation() {
        let p = pod(json!({"containers": [], "subdomain": "web", "setHostnameAsFQDN": true}));
        assert_eq!(
            pod_hostname(&p, "cluster.local").expect("fqdn").hostname,
            "web-1.web.shop.svc.cluster.local"
        );
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": long}, "spec": {"containers": []}}))
            .expect("pod");
        assert_eq!(pod_hostname(&p, "cluster.local").expect("truncated").hostname, "a".repeat(62));
    }

    #[test]
    fn errors() {
        let p = pod(json!({"containers": [], "hostname": "Web_1"}));
        assert_eq!(
            pod_hostname(&p, "cluster.local").unwrap_err().to_string(),
            "pod \"shop/web-1\": spec.hostname \"Web_1\" is not a valid DNS label (lower-case alphanumerics and '-', \
             at most 63 characters, starting and ending alphanumeric)"
        );
        let p = pod(json!({"containers": [], "dnsPolicy": "Sometimes"}));
        assert_eq!(
            resolv_conf(&p, &dns()).unwrap_err().to_string(),
            "pod \"shop/web-1\": unknown dnsPolicy \"Sometimes\": expected ClusterFirst, ClusterFirstWithHostNet, Default or None"
        );
        let p = pod(json!({"containers": [], "dnsPolicy": "None"}));
        assert_eq!(
            resolv_conf(&p, &dns()).unwrap_err().to_string(),
            "pod \"shop/web-1\": dnsPolicy None needs dnsConfig.nameservers"
        );
    }

    #[test]
    fn dns_policies_and_config() {
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            resolv_conf(&p, &dns()).expect("default"),
            "nameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:1\n"
        );
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.2.3.4"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            resolv_conf(&p, &dns()).expect("none"),
            "nameserver 1.2.3.4\nsearch a.example\noptions ndots:2 edns0\n"
        );
        let p = pod(
            json!({"containers": [], "dnsConfig": {"searches": ["x.example"], "options": [{"name": "ndots", "value": "1"}]}}),
        );
        assert_eq!(
            resolv_conf(&p, &dns()).expect("merged"),
            "nameserver 10.244.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local x.example\noptions ndots:1\n"
        );
    }
}
