//! The container image, run: `privx-operator run` inside the image against the PrivX simulator
//! (TLS, at a host name) and the fake Kubernetes API served over HTTP, both in this process
//! and outside the container.
//!
//! `#[ignore]`d: it needs a built image and a container runtime. `.ci/image` builds the image
//! and runs these tests with `PRIVX_OPERATOR_IMAGE_RUN` naming the command that runs the image
//! (`.ci/image-run`) under the chart's security context (uid/gid 65532, read-only root file
//! system, every capability dropped, no new privileges) on the host's network:
//!
//! ```text
//! $PRIVX_OPERATOR_IMAGE_RUN [CONTAINER OPTIONS (-v, -e, --add-host)] -- [privx-operator ARGS]
//! ```
//!
//! Files reach the container the way the chart mounts them: the PrivX CA at
//! `/etc/privx-operator/ca/ca.crt`, the credentials under `/etc/privx-operator/credentials/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use privx_sim::{SimOptions, Simulator};
use serde_json::json;
use support::FakeKube;
use support::running::{namespace_object, secret_object, vault_secret_object};

/// The PrivX host name the operator is given; only the container's `/etc/hosts` knows it.
const PRIVX_HOST: &str = "privx.image.test";
/// A PrivX host name only DNS knows: the server at `PRIVX_OPERATOR_IMAGE_DNS` (`.ci/image`
/// starts one) answers it with 127.0.0.1.
const PRIVX_DNS_HOST: &str = "privx-dns.image.test";
const NS: &str = "image";
const CA_DIR: &str = "/etc/privx-operator/ca";
const CREDENTIALS_DIR: &str = "/etc/privx-operator/credentials";
const KUBECONFIG_DIR: &str = "/var/run/privx-operator-test";
/// How long the operator may take to start or to reach a state before the test gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn runner() -> PathBuf {
    PathBuf::from(std::env::var_os("PRIVX_OPERATOR_IMAGE_RUN").expect(
        "PRIVX_OPERATOR_IMAGE_RUN must name the command that runs the image (.ci/image sets it)",
    ))
}

/// The simulator (TLS, its certificate naming [`PRIVX_HOST`]) and the fake API served over
/// HTTP with the CRDs established and the namespace [`NS`]; the files the container mounts.
struct World {
    sim: Simulator,
    kube: FakeKube,
    _served: support::fake_kube::serve::Served,
    dir: PathBuf,
}

impl World {
    async fn start() -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = Simulator::start(SimOptions {
            tls: true,
            tls_names: vec![PRIVX_HOST.to_string(), PRIVX_DNS_HOST.to_string()],
            ..Default::default()
        })
        .await
        .expect("the simulator starts");
        let kube = FakeKube::default();
        for crd in privx_operator::crd::all_crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let mut object = serde_json::to_value(&crd).unwrap();
            object["status"] = json!({"conditions": [
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ]});
            kube.put(
                &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                object,
            );
        }
        kube.put(
            &format!("/api/v1/namespaces/{NS}"),
            namespace_object(NS, json!({})),
        );
        let served = kube.serve_http().await.expect("serving the fake API");

        let dir = std::env::temp_dir().join(format!("privx-image-{:08x}", rand::random::<u32>()));
        let creds = sim.credentials();
        // World-readable: the container runs as uid 65532, and these are the throwaway
        // credentials of this simulator (the chart uses mode 0440 and fsGroup instead).
        write(
            &dir.join("ca/ca.crt"),
            &sim.ca_pem().expect("a TLS certificate"),
        );
        for (name, value) in [
            ("api-client-id", &creds.api_client_id),
            ("api-client-secret", &creds.api_client_secret),
            ("oauth-client-id", &creds.oauth_client_id),
            ("oauth-client-secret", &creds.oauth_client_secret),
        ] {
            write(&dir.join("credentials").join(name), value);
        }
        write(
            &dir.join("kubeconfig/config"),
            &served.kubeconfig(NS).to_string(),
        );
        World {
            sim,
            kube,
            _served: served,
            dir,
        }
    }

    /// Starts the operator in the image with the chart's mounts and environment (the CA only
    /// when `with_ca`), `extra` container options, and PrivX at `https://{host}:PORT`.
    fn operator(&self, name: &str, host: &str, with_ca: bool, extra: &[String]) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mount = |sub: &str, at: &str| {
            vec![
                "-v".to_string(),
                format!("{}:{at}:ro", self.dir.join(sub).display()),
            ]
        };
        let mut options = Vec::new();
        options.extend(mount("credentials", CREDENTIALS_DIR));
        options.extend(mount("kubeconfig", KUBECONFIG_DIR));
        if with_ca {
            options.extend(mount("ca", CA_DIR));
        }
        for (key, file) in [
            ("PRIVX_API_CLIENT_ID_FILE", "api-client-id"),
            ("PRIVX_API_CLIENT_SECRET_FILE", "api-client-secret"),
            ("PRIVX_API_OAUTH_CLIENT_ID_FILE", "oauth-client-id"),
            ("PRIVX_API_OAUTH_CLIENT_SECRET_FILE", "oauth-client-secret"),
        ] {
            options.push("-e".to_string());
            options.push(format!("{key}={CREDENTIALS_DIR}/{file}"));
        }
        options.push("-e".to_string());
        options.push(format!("KUBECONFIG={KUBECONFIG_DIR}/config"));
        options.push("-e".to_string());
        options.push(format!("POD_NAMESPACE={NS}"));
        options.extend(extra.iter().cloned());

        let mut args = vec![
            "run".to_string(),
            format!(
                "--privx-url=https://{host}:{}",
                self.sim.local_addr().port()
            ),
            format!("--http-addr=127.0.0.1:{port}"),
            format!("--namespaces={NS}"),
            "--privx-self-roles=privx-operator".to_string(),
            "--log-format=json".to_string(),
        ];
        if with_ca {
            args.push(format!("--privx-ca-file={CA_DIR}/ca.crt"));
        }
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("the operator's log file");
        let child = Command::new(runner())
            .args(&options)
            .arg("--")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("starting PRIVX_OPERATOR_IMAGE_RUN");
        Operator {
            child: Some(child),
            port,
            log,
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `text` to `path`, readable by the container's uid (0644, directories 0755 whatever
/// the umask).
fn write(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = path.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    for dir in [parent, parent.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// The operator running in its container; stopped (SIGTERM, as the kubelet does) on drop.
struct Operator {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, when the container exited.
    fn check_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "the container exited ({status}) early; its log:\n{}",
                self.log()
            );
        }
    }

    async fn ready(&self) -> bool {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port))
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Waits until `check` holds, polling while the container runs; panics after [`PATIENCE`]
    /// with the operator's log.
    async fn wait_for(&mut self, what: &str, mut check: impl AsyncFnMut(&Operator) -> bool) {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            self.check_running();
            if check(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "no {what} after {PATIENCE:?}; the operator's log:\n{}",
            self.log()
        );
    }

    /// SIGTERM to the runner (which hands it to the container) and its exit status.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the container did not stop on SIGTERM; its log:\n{}",
            self.log()
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.is_some() && !std::thread::panicking() {
            self.stop();
        } else if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

fn ready_status(kube: &FakeKube, name: &str) -> Option<String> {
    let object = kube.get(&support::vs_path(NS, name))?;
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built image and a container runtime: .ci/image runs it"]
async fn in_the_image_a_vault_secret_reaches_ready_with_privx_at_a_host_name_over_tls() {
    let world = World::start().await;
    let mut operator = world.operator(
        "ready",
        PRIVX_HOST,
        true,
        &["--add-host".to_string(), format!("{PRIVX_HOST}:127.0.0.1")],
    );
    // Ready means: the watches of the fake API listed, and PrivX answered over TLS at its host
    // name, with the certificate verified against the mounted CA.
    operator.wait_for("/readyz 200", Operator::ready).await;

    world.kube.put(
        &support::secret_path(NS, "app-source"),
        secret_object(NS, "app-source", &[("password", "image-test-value")]),
    );
    world.kube.put(
        &support::vs_path(NS, "app"),
        vault_secret_object(
            NS,
            "app",
            json!({"source": {"secretRef": {"name": "app-source"}}, "mirror": {}}),
        ),
    );
    let kube = world.kube.clone();
    operator
        .wait_for("Ready=True on the VaultSecret", async |_| {
            ready_status(&kube, "app").as_deref() == Some("True")
        })
        .await;
    let created = world
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path == "/vault/api/v1/secrets" && r.status == 201);
    assert!(created, "the simulator created no secret");
    // The mirror (named after the VaultSecret) holds the value read back from PrivX.
    let mirror = world
        .kube
        .get(&support::secret_path(NS, "app"))
        .expect("the mirror Secret");
    assert_eq!(
        mirror["data"]["password"],
        json!(base64::engine::general_purpose::STANDARD.encode("image-test-value"))
    );

    let status = operator.stop();
    let log = operator.log();
    assert!(
        status.success(),
        "the operator did not stop cleanly ({status}):\n{log}"
    );
    assert!(
        !log.contains("image-test-value"),
        "the secret value appears in the operator's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built image and a container runtime: .ci/image runs it"]
async fn in_the_image_privx_whose_certificate_no_root_signs_is_refused() {
    let world = World::start().await;
    // No CA mounted: the operator has only the image's CA roots, which load (an image without
    // them fails with "No CA certificates were loaded from the system") and do not sign the
    // simulator's certificate.
    let mut operator = world.operator(
        "untrusted",
        PRIVX_HOST,
        false,
        &["--add-host".to_string(), format!("{PRIVX_HOST}:127.0.0.1")],
    );
    operator
        .wait_for("a certificate error in the log", async |op| {
            op.log().contains("UnknownIssuer")
        })
        .await;
    let log = operator.log();
    assert!(
        !log.contains("No CA certificates were loaded"),
        "the image's CA roots did not load:\n{log}"
    );
    assert!(!operator.ready().await, "ready without a verified PrivX");
    assert!(operator.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built image and a container runtime: .ci/image runs it"]
async fn in_the_image_a_privx_host_name_that_does_not_resolve_is_reported() {
    let world = World::start().await;
    // No --add-host: the name is in no /etc/hosts and no DNS (.test is reserved).
    let mut operator = world.operator("unresolved", PRIVX_HOST, true, &[]);
    operator
        .wait_for("a name-resolution error in the log", async |op| {
            let log = op.log();
            log.contains("PrivX host name not found")
        })
        .await;
    assert!(!operator.ready().await, "ready without reaching PrivX");
    assert!(operator.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the built image, a container runtime and a DNS server: .ci/image runs it"]
async fn in_the_image_a_privx_host_name_resolves_through_dns() {
    let dns = std::env::var("PRIVX_OPERATOR_IMAGE_DNS").expect(
        "PRIVX_OPERATOR_IMAGE_DNS must name a DNS server answering privx-dns.image.test (.ci/image starts one)",
    );
    let world = World::start().await;
    // The container's resolv.conf names only that server, and no /etc/hosts entry exists:
    // glibc's built-in dns source (no libnss_dns in the image) must find the name.
    let resolv = world.dir.join("resolv/resolv.conf");
    write(&resolv, &format!("nameserver {dns}\n"));
    let mut operator = world.operator(
        "dns",
        PRIVX_DNS_HOST,
        true,
        &[
            "-v".to_string(),
            format!("{}:/etc/resolv.conf:ro", resolv.display()),
        ],
    );
    operator.wait_for("/readyz 200", Operator::ready).await;
    assert!(operator.stop().success());
}
