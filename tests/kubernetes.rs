//! The Kubernetes manifests in deploy/kubernetes/ as a cluster would take them: the
//! kustomization renders with kustomize (kubectl's, from PyPI), every object passes the
//! Kubernetes JSON schemas of the versions below (kubernetes-validate, strict), and what
//! the Deployment says of the gateway is what the gateway does: its ConfigMap passes
//! `patgate check-config` with the Secret's values given as the Deployment gives them,
//! the container ports are `listen` and `admin_listen`, and the probes and the
//! ServiceMonitor name paths the running gateway answers on those ports. Both tools are
//! installed by scripts/kubernetes-setup.sh.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde::Deserialize;
use serde_json::Value;

/// The oldest Kubernetes version still maintained upstream when this was written, and
/// the newest the validator bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool of the test's virtual environment, installed when it is missing (once, for
/// all the cases running at the same time).
fn venv_bin(name: &str) -> PathBuf {
    static SETUP: std::sync::Once = std::sync::Once::new();
    let bin = root().join("tests/kubernetes/.venv/bin").join(name);
    SETUP.call_once(|| {
        if !bin.exists() {
            let status = Command::new("bash")
                .arg(root().join("scripts/kubernetes-setup.sh"))
                .status()
                .expect("bash runs scripts/kubernetes-setup.sh");
            assert!(status.success(), "scripts/kubernetes-setup.sh failed");
        }
    });
    assert!(
        bin.exists(),
        "{} is missing; run scripts/kubernetes-setup.sh",
        bin.display()
    );
    bin
}

/// A copy of deploy/kubernetes/ with `secret.env` made from the example, as an operator
/// prepares it, and an overlay beside it that adds the ServiceMonitor component.
struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        copy_dir(&root().join("deploy/kubernetes"), &base);
        std::fs::copy(base.join("secret.env.example"), base.join("secret.env")).unwrap();
        let overlay = dir.path().join("with-servicemonitor");
        std::fs::create_dir(&overlay).unwrap();
        std::fs::write(
            overlay.join("kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             namespace: deploy\nresources: [../base]\ncomponents: [../base/servicemonitor]\n",
        )
        .unwrap();
        Checkout { dir }
    }

    fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }

    fn overlay(&self) -> PathBuf {
        self.dir.path().join("with-servicemonitor")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "secret.env" {
            // An operator's own secret.env in the working tree is never read.
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `kubectl kustomize DIR`: (success, stdout, stderr).
fn kustomize(dir: &Path) -> (bool, String, String) {
    let out = Command::new(venv_bin("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn render(dir: &Path) -> String {
    let (ok, stdout, stderr) = kustomize(dir);
    assert!(ok, "kubectl kustomize {} failed: {stderr}", dir.display());
    stdout
}

fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}… in the rendered manifests"))
}

/// `kubernetes-validate --strict` on a file: (success, everything it printed).
fn validate(file: &Path, version: &str) -> (bool, String) {
    let out = Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_kustomization_renders_every_object_and_each_passes_the_kubernetes_schemas() {
    let checkout = Checkout::new();
    let rendered = render(&checkout.overlay());
    let all = objects(&rendered);
    let mut kinds: Vec<String> = all
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
        .collect();
    kinds.sort();
    for wanted in [
        "ConfigMap/\"patgate-config-",
        "Deployment/\"patgate\"",
        "NetworkPolicy/\"deploy-http-from-patgate-only\"",
        "PodDisruptionBudget/\"patgate\"",
        "Secret/\"patgate-",
        "Service/\"patgate\"",
        "Service/\"patgate-metrics\"",
        "ServiceMonitor/\"patgate\"",
    ] {
        assert!(
            kinds.iter().any(|k| k.starts_with(wanted)),
            "{wanted} missing from {kinds:?}"
        );
    }

    // The generated names (with their content hash) are the ones the Deployment uses.
    let deployment = find(&all, "Deployment", "patgate");
    let pod = &deployment["spec"]["template"]["spec"];
    let config_map = find(&all, "ConfigMap", "patgate-config-");
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let secret = find(&all, "Secret", "patgate-");
    for env in pod["containers"][0]["env"].as_array().unwrap() {
        if let Some(key) = env["valueFrom"]["secretKeyRef"].as_object() {
            assert_eq!(key["name"], secret["metadata"]["name"], "{env}");
            assert!(
                secret["data"][key["key"].as_str().unwrap()].is_string(),
                "the Secret has no key {}",
                key["key"]
            );
        }
    }
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pdb = find(&all, "PodDisruptionBudget", "patgate");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    // Each selector picks the gateway's pods, and the NetworkPolicy lets them in.
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for selector in [
        &pdb["spec"]["selector"]["matchLabels"],
        &find(&all, "Service", "patgate")["spec"]["selector"],
        &find(&all, "NetworkPolicy", "deploy-http")["spec"]["ingress"][0]["from"][0]["podSelector"]
            ["matchLabels"],
    ] {
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&pod_labels[key], value, "{selector} against {pod_labels}");
        }
    }
    let policy = find(&all, "NetworkPolicy", "deploy-http");
    assert_ne!(
        policy["spec"]["podSelector"]["matchLabels"], pod_labels["app.kubernetes.io/name"],
        "the NetworkPolicy must select Deploy's pods, not the gateway's"
    );

    let file = checkout.dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    for version in KUBERNETES_VERSIONS {
        let (ok, report) = validate(&file, version);
        assert!(ok, "Kubernetes {version}: {report}");
        for object in [
            "deployment/patgate",
            "poddisruptionbudget/patgate",
            "service/patgate",
        ] {
            assert!(
                report.contains(&format!("passed for resource {object}")),
                "{object} was not validated for {version}: {report}"
            );
        }
    }
}

#[test]
fn a_manifest_with_a_broken_field_is_refused() {
    let checkout = Checkout::new();
    let rendered = render(&checkout.base());
    let broken = rendered.replacen("containerPort: 4516", "containerPort: \"4516\"", 1);
    assert_ne!(broken, rendered);
    let file = checkout.dir.path().join("broken.yaml");
    std::fs::write(&file, &broken).unwrap();
    let (ok, report) = validate(&file, KUBERNETES_VERSIONS[0]);
    assert!(!ok, "a string port passed: {report}");
    assert!(report.contains("containerPort"), "{report}");

    let misspelt = rendered.replacen("readinessProbe:", "readinesProbe:", 1);
    std::fs::write(&file, &misspelt).unwrap();
    let (ok, report) = validate(&file, KUBERNETES_VERSIONS[0]);
    assert!(!ok, "a misspelt field passed: {report}");
    assert!(report.contains("readinesProbe"), "{report}");

    // Without the operator's secret.env the kustomization does not render at all.
    std::fs::remove_file(checkout.base().join("secret.env")).unwrap();
    let (ok, _, stderr) = kustomize(&checkout.base());
    assert!(!ok);
    assert!(stderr.contains("secret.env"), "{stderr}");
}

/// What the rendered manifests say of one container.
struct Pod {
    config_yaml: String,
    /// Environment from the Secret (decoded) and plain values, as the kubelet sets it.
    env: Vec<(String, String)>,
    container: Value,
    pod: Value,
    metrics_service: Value,
    service_monitor: Value,
    service: Value,
}

fn pod() -> Pod {
    use base64::Engine;
    let checkout = Checkout::new();
    let all = objects(&render(&checkout.overlay()));
    let deployment = find(&all, "Deployment", "patgate");
    let pod = deployment["spec"]["template"]["spec"].clone();
    let container = pod["containers"][0].clone();
    let config_yaml = find(&all, "ConfigMap", "patgate-config-")["data"]["gateway.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = find(&all, "Secret", "patgate-");
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|env| {
            let name = env["name"].as_str().unwrap().to_string();
            let value = match env["valueFrom"]["secretKeyRef"]["key"].as_str() {
                Some(key) => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(secret["data"][key].as_str().unwrap().replace('\n', ""))
                        .unwrap(),
                )
                .unwrap(),
                None => env["value"].as_str().unwrap().to_string(),
            };
            (name, value)
        })
        .collect();
    Pod {
        config_yaml,
        env,
        container,
        pod,
        metrics_service: find(&all, "Service", "patgate-metrics").clone(),
        service_monitor: find(&all, "ServiceMonitor", "patgate").clone(),
        service: all
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "patgate")
            .unwrap()
            .clone(),
    }
}

impl Pod {
    fn container_port(&self, name_or_number: &Value) -> u64 {
        if let Some(number) = name_or_number.as_u64() {
            return number;
        }
        self.container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name_or_number)
            .unwrap_or_else(|| panic!("no container port named {name_or_number}"))["containerPort"]
            .as_u64()
            .unwrap()
    }

    /// The environment with the Secret's placeholders replaced, as an operator fills in
    /// secret.env.
    fn filled_env(&self, database_url: &str) -> Vec<(String, String)> {
        let key: String = random_suffix().repeat(6);
        self.env
            .iter()
            .map(|(name, value)| {
                let value = match name.as_str() {
                    "PATGATE_DATABASE__URL" => database_url.to_string(),
                    "PATGATE_SECRETS__TOKEN_KEY" => key.clone(),
                    _ => value.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    }
}

fn config_port(config: &serde_yaml_ng::Value, key: &str) -> u64 {
    let address = config[key].as_str().unwrap();
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployment_describes_the_gateway_it_runs() {
    let pod = pod();
    // The Deployment's database is PostgreSQL; where none is configured for the tests,
    // SQLite stands in (the ports, paths and checks under test do not depend on it).
    let backend = match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    let db = TestDb::new(backend).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("gateway.yaml");
    std::fs::write(&config_file, &pod.config_yaml).unwrap();
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&pod.config_yaml).unwrap();

    // As committed, the Secret's placeholder key stops the gateway, naming the key.
    let placeholders: Vec<(&str, &str)> = pod
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config_arg = config_file.to_str().unwrap();
    let (code, _, stderr) = run_in(
        dir.path(),
        &["check-config", "--config", config_arg],
        &placeholders,
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("secrets.token_key"), "{stderr}");

    // Filled in, it passes the checks `serve` makes.
    let filled = pod.filled_env(&db.url);
    let env: Vec<(&str, &str)> = filled
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, stdout, stderr) =
        run_in(dir.path(), &["check-config", "--config", config_arg], &env).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("listen 0.0.0.0:4516"), "{stdout}");

    // Container ports are the configured listeners; the Services point at them.
    let listen = config_port(&config, "listen");
    let admin = config_port(&config, "admin_listen");
    assert_eq!(pod.container_port(&Value::from("http")), listen);
    assert_eq!(pod.container_port(&Value::from("admin")), admin);
    assert_eq!(
        pod.container_port(&pod.service["spec"]["ports"][0]["targetPort"]),
        listen
    );
    let metrics_port = &pod.metrics_service["spec"]["ports"][0];
    assert_eq!(pod.container_port(&metrics_port["targetPort"]), admin);
    assert_eq!(
        pod.service_monitor["spec"]["endpoints"][0]["port"],
        metrics_port["name"]
    );

    // The grace period covers the preStop sleep and the gateway's own stop.
    let pre_stop = &pod.container["lifecycle"]["preStop"]["exec"]["command"];
    assert_eq!(pre_stop[0], "sleep");
    let sleep: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    let grace = seconds(config["shutdown_grace"].as_str().unwrap());
    let delay = seconds(config["shutdown_delay"].as_str().unwrap_or("0s"));
    let period = pod.pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        period > sleep + delay + grace,
        "{period} s for {sleep} s + {delay} s + {grace} s"
    );

    // The running gateway answers each probe on the port it names. Loopback ports stand
    // in for the pod's: each container port is mapped to a free one.
    let upstream = Upstream::start().await;
    let (main_port, admin_port) = (free_port(), free_port());
    let mapped = |port: u64| match port {
        p if p == listen => main_port,
        p if p == admin => admin_port,
        other => panic!("port {other} is neither listen nor admin_listen"),
    };
    let main_address = format!("127.0.0.1:{main_port}");
    let admin_address = format!("127.0.0.1:{admin_port}");
    let upstream_url = upstream.url();
    let mut env = env.clone();
    env.extend([
        ("PATGATE_LISTEN", main_address.as_str()),
        ("PATGATE_ADMIN_LISTEN", admin_address.as_str()),
        ("PATGATE_UPSTREAM__URL", upstream_url.as_str()),
    ]);
    let gateway = Process::start_in(dir.path(), &config_file, &env).await;
    let mut probed = Vec::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &pod.container[probe]["httpGet"];
        let port = mapped(pod.container_port(&get["port"]));
        let path = get["path"].as_str().unwrap();
        let answer = send("GET", &format!("http://127.0.0.1:{port}{path}"), &[]).await;
        assert_eq!(
            answer.status, 200,
            "{probe} {path} on {port}: {:?}",
            answer.body
        );
        probed.push(path.to_string());
    }
    assert!(
        probed.contains(&"/patgate/readyz".to_string()),
        "{probed:?}"
    );
    assert!(
        probed.contains(&"/patgate/healthz".to_string()),
        "{probed:?}"
    );
    let endpoint = &pod.service_monitor["spec"]["endpoints"][0];
    let path = endpoint["path"].as_str().unwrap();
    let metrics = send("GET", &format!("http://127.0.0.1:{admin_port}{path}"), &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("patgate_"),
        "{:?}",
        metrics.body
    );
    // And the Service's port is the gateway's: a request there reaches Deploy.
    let path = "/deployit/repository/exists/Applications";
    let proxied = send("GET", &format!("http://{main_address}{path}"), &[]).await;
    assert_eq!(proxied.status, 200, "{:?}", proxied.body);
    assert!(upstream.seen().iter().any(|seen| seen.path == path));
    gateway.terminate().await;
}
