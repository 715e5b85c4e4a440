//! `deploy/kubernetes/` checked without a cluster: every document parses and has what
//! `kubectl apply --dry-run=client` insists on, the references between objects resolve
//! (volumes, ConfigMaps, ServiceAccounts, Services, selectors), and the embedded agent
//! configuration, server configuration and SecretProviderClass parameters are accepted by
//! the same parsers dbwarden runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML document of the directory, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for de in serde_norway::Deserializer::from_str(&text) {
            let value =
                Value::deserialize(de).unwrap_or_else(|e| panic!("{name}: invalid YAML: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

/// apiVersion of each kind used, and whether it is namespaced.
fn kind_info(kind: &str) -> Option<(&'static str, bool)> {
    Some(match kind {
        "Namespace" => ("v1", false),
        "ServiceAccount" | "ConfigMap" | "Service" | "Secret" => ("v1", true),
        "Deployment" | "StatefulSet" | "DaemonSet" => ("apps/v1", true),
        "ClusterRole" | "ClusterRoleBinding" => ("rbac.authorization.k8s.io/v1", false),
        "Role" | "RoleBinding" => ("rbac.authorization.k8s.io/v1", true),
        "NetworkPolicy" => ("networking.k8s.io/v1", true),
        "SecretProviderClass" => ("secrets-store.csi.x-k8s.io/v1", true),
        _ => return None,
    })
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn kubernetes_manifests_are_complete_and_consistent() {
    let docs = documents();
    // (kind, namespace, name) of everything defined.
    let mut defined = BTreeSet::new();
    for (file, doc) in &docs {
        let kind = str_at(doc, &["kind"]).unwrap_or_else(|| panic!("{file}: no kind"));
        let api = str_at(doc, &["apiVersion"]).unwrap_or_else(|| panic!("{file}: no apiVersion"));
        let name = str_at(doc, &["metadata", "name"])
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| panic!("{file}: {kind} without metadata.name"));
        let (expected_api, namespaced) =
            kind_info(kind).unwrap_or_else(|| panic!("{file}: unexpected kind {kind}"));
        assert_eq!(api, expected_api, "{file}: {kind}/{name}");
        let ns = str_at(doc, &["metadata", "namespace"]).unwrap_or_default();
        assert_eq!(
            !ns.is_empty(),
            namespaced,
            "{file}: {kind}/{name}: namespace must be set exactly for namespaced kinds"
        );
        assert!(
            defined.insert((kind.to_owned(), ns.to_owned(), name.to_owned())),
            "{file}: {kind} {ns}/{name} defined twice"
        );
    }
    let has = |kind: &str, ns: &str, name: &str| {
        defined.contains(&(kind.to_owned(), ns.to_owned(), name.to_owned()))
    };
    for (_, ns, _) in &defined {
        assert!(
            ns.is_empty() || has("Namespace", "", ns),
            "namespace {ns} is not defined"
        );
    }

    let mut workloads = Vec::new();
    for (file, doc) in &docs {
        let kind = str_at(doc, &["kind"]).unwrap();
        let name = str_at(doc, &["metadata", "name"]).unwrap();
        let ns = str_at(doc, &["metadata", "namespace"]).unwrap_or_default();
        let at = format!("{file}: {kind} {ns}/{name}");
        match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" => {
                let template = &doc["spec"]["template"];
                let labels = &template["metadata"]["labels"];
                assert!(
                    labels_match(&doc["spec"]["selector"]["matchLabels"], labels),
                    "{at}: selector does not match the template's labels"
                );
                let pod = &template["spec"];
                let volumes: BTreeMap<&str, &Value> = pod["volumes"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .map(|v| (str_at(v, &["name"]).unwrap(), v))
                            .collect()
                    })
                    .unwrap_or_default();
                let claims: BTreeSet<&str> = doc["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|c| str_at(c, &["metadata", "name"]))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut used = BTreeSet::new();
                let containers: Vec<&Value> = ["initContainers", "containers"]
                    .iter()
                    .filter_map(|k| pod[k].as_array())
                    .flatten()
                    .collect();
                assert!(
                    pod["containers"].as_array().is_some_and(|c| !c.is_empty()),
                    "{at}: no containers"
                );
                let mut names = BTreeSet::new();
                for c in &containers {
                    let cname = str_at(c, &["name"])
                        .unwrap_or_else(|| panic!("{at}: container without name"));
                    assert!(names.insert(cname), "{at}: two containers named {cname}");
                    let image = str_at(c, &["image"]).unwrap_or_default();
                    assert!(
                        !image.is_empty() && !image.contains(' '),
                        "{at}/{cname}: image"
                    );
                    for m in c["volumeMounts"].as_array().into_iter().flatten() {
                        let vname = str_at(m, &["name"]).unwrap();
                        assert!(
                            volumes.contains_key(vname) || claims.contains(vname),
                            "{at}/{cname}: mounts undefined volume {vname}"
                        );
                        assert!(str_at(m, &["mountPath"]).is_some_and(|p| p.starts_with('/')));
                        used.insert(vname);
                    }
                    for port in c["ports"].as_array().into_iter().flatten() {
                        assert!(
                            port["containerPort"].as_u64().is_some(),
                            "{at}/{cname}: port"
                        );
                    }
                }
                for (vname, volume) in &volumes {
                    assert!(
                        used.contains(vname),
                        "{at}: volume {vname} is never mounted"
                    );
                    if let Some(cm) = str_at(volume, &["configMap", "name"]) {
                        assert!(
                            has("ConfigMap", ns, cm),
                            "{at}: ConfigMap {cm} is not defined"
                        );
                    }
                }
                if let Some(sa) = str_at(pod, &["serviceAccountName"]) {
                    assert!(
                        has("ServiceAccount", ns, sa),
                        "{at}: ServiceAccount {sa} is not defined"
                    );
                }
                if kind == "StatefulSet" {
                    let svc = str_at(doc, &["spec", "serviceName"]).unwrap();
                    assert!(
                        has("Service", ns, svc),
                        "{at}: serviceName {svc} is not defined"
                    );
                }
                workloads.push((ns.to_owned(), labels.clone()));
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                for s in doc["subjects"].as_array().unwrap() {
                    if str_at(s, &["kind"]) == Some("ServiceAccount") {
                        let sns = str_at(s, &["namespace"]).unwrap_or(ns);
                        let sname = str_at(s, &["name"]).unwrap();
                        assert!(
                            has("ServiceAccount", sns, sname),
                            "{at}: subject {sns}/{sname}"
                        );
                    }
                }
                assert!(str_at(doc, &["roleRef", "name"]).is_some(), "{at}: roleRef");
            }
            _ => {}
        }
    }
    // Every Service and NetworkPolicy selects some workload's Pods.
    for (file, doc) in &docs {
        let kind = str_at(doc, &["kind"]).unwrap();
        let ns = str_at(doc, &["metadata", "namespace"]).unwrap_or_default();
        let selector = match kind {
            "Service" => &doc["spec"]["selector"],
            "NetworkPolicy" => &doc["spec"]["podSelector"]["matchLabels"],
            _ => continue,
        };
        assert!(
            workloads
                .iter()
                .any(|(wns, labels)| wns == ns && labels_match(selector, labels)),
            "{file}: {kind} {} selects no Pod",
            str_at(doc, &["metadata", "name"]).unwrap()
        );
    }
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    &docs
        .iter()
        .find(|(_, d)| {
            str_at(d, &["kind"]) == Some(kind) && str_at(d, &["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .1
}

#[test]
fn the_example_wires_agent_server_and_csi_provider_together() {
    let docs = documents();
    // order-service: three replicas, the agent sidecar, a shared in-memory volume.
    let deployment = find(&docs, "Deployment", "order-service");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let secrets = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "secrets")
        .unwrap();
    assert_eq!(secrets["emptyDir"]["medium"], "Memory");
    let agent = &pod["initContainers"][0];
    assert_eq!(agent["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(agent["args"][0], "agent");
    let app = &pod["containers"][0];
    let app_mount = app["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "secrets")
        .unwrap();
    assert_eq!(app_mount["mountPath"], "/etc/secrets");
    assert_eq!(app_mount["readOnly"], true);

    // The agent configuration in the ConfigMap is one the agent accepts, and writes where
    // the application reads.
    let config_map = find(&docs, "ConfigMap", "order-service-agent");
    let agent_toml = config_map["data"]["agent.toml"].as_str().unwrap();
    let config = dbwarden::agent::config::AgentConfig::parse(agent_toml)
        .unwrap_or_else(|e| panic!("agent.toml: {e}"));
    let outputs: Vec<String> = config.secrets[0]
        .outputs
        .iter()
        .map(|o| o.path.display().to_string())
        .collect();
    assert!(outputs.contains(&"/etc/secrets/db-user".to_owned()));
    assert!(outputs.contains(&"/etc/secrets/db-pass".to_owned()));
    assert_eq!(
        config.state_path(),
        Path::new("/etc/secrets/.dbwarden-agent-state.json")
    );
    let token_path = match &config.auto_auth {
        dbwarden::agent::config::AutoAuth::Kubernetes { token_path, .. } => token_path.clone(),
        other => panic!("{other:?}"),
    };
    let sa_mount = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "sa-token")
        .unwrap();
    assert_eq!(
        token_path,
        Path::new(sa_mount["mountPath"].as_str().unwrap()).join("token")
    );

    // The server configuration parses.
    let server_cm = find(&docs, "ConfigMap", "dbwarden-config");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dbwarden.toml");
    std::fs::write(&path, server_cm["data"]["dbwarden.toml"].as_str().unwrap()).unwrap();
    dbwarden::config::ServerConfig::load(&path).unwrap_or_else(|e| panic!("dbwarden.toml: {e}"));

    // The SecretProviderClass parameters are what the provider accepts.
    let spc = find(&docs, "SecretProviderClass", "order-db");
    assert_eq!(spc["spec"]["provider"], "dbwarden");
    #[cfg(feature = "csi")]
    {
        let mut attributes = spc["spec"]["parameters"].clone();
        attributes["csi.storage.k8s.io/pod.uid"] = Value::from("uid");
        let params = dbwarden::csi::attributes::MountParams::parse(&attributes.to_string())
            .unwrap_or_else(|e| panic!("SecretProviderClass: {e}"));
        assert_eq!(params.objects.len(), 2);
    }
    // The docker-compose agent demo's configuration is valid too.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/agent-demo/agent.toml");
    dbwarden::agent::config::AgentConfig::load(&demo).unwrap_or_else(|e| panic!("{e}"));
    let daemonset = find(&docs, "DaemonSet", "dbwarden-csi-provider");
    let args = daemonset["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--endpoint=/provider/dbwarden.sock"),
        "{args}"
    );
}
