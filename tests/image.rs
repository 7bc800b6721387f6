//! The operator's image: `scripts/image` builds it from local files, and podman runs it as a
//! cluster runs the chart's pod (read-only root, uid 65532, every capability dropped,
//! no-new-privileges, a tmpfs at the chart's journal path) against the emulators of this process
//! on the host's network. Also: the Dockerfile and `scripts/image` describe the same image.
//!
//! The image is built once per run of this file (a release build: minutes on a fresh clone).
//! `scripts/container-tools` installs buildah, podman and runc from Debian's packages if they
//! are missing; elsewhere install them yourself.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};
use testground::{
    eventually,
    process::{Container, OperatorOptions, OperatorProcess},
    Ground, GroundConfig,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Where the chart mounts the journal's emptyDir (charts/…/templates/deployment.yaml).
const JOURNAL: &str = "/run/slack-token-operator/journal";
const NS: &str = "image";

struct Image {
    archive: PathBuf,
    reference: String,
}

/// `scripts/image`, then `podman load` of the archive it printed last.
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        // Niced: the release build must not starve this file's other tests.
        let out = Command::new("nice")
            .args(["-n", "10", "scripts/image"])
            .current_dir(ROOT)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("scripts/image runs");
        assert!(out.status.success(), "scripts/image failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let archive = PathBuf::from(stdout.lines().last().expect("scripts/image prints the archive").trim());
        assert!(archive.is_file(), "{} is the archive", archive.display());
        let loaded = podman(&["load", "-i", archive.to_str().unwrap()]);
        let reference = loaded
            .lines()
            .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image(s): ")))
            .unwrap_or_else(|| panic!("podman load names the image: {loaded}"))
            .trim()
            .to_owned();
        Image { archive, reference }
    })
}

/// podman's own arguments: runc, since crun 1.8 (Debian 12's default) refuses hosts with cgroups
/// in hybrid mode.
const PODMAN: [&str; 2] = ["--runtime", "runc"];

fn podman(args: &[&str]) -> String {
    let out = Command::new("podman").args(PODMAN).args(args).output().expect("podman runs");
    assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman run` as the chart's pod runs: its securityContext, and the journal's emptyDir.
fn as_the_chart_runs_it(name: &str) -> Vec<String> {
    [
        "--rm",
        "--name",
        name,
        "--read-only",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        // An emptyDir is a world-writable directory.
        &format!("{JOURNAL}:rw,size=16m,mode=1777"),
    ]
    .iter()
    .chain(&LIMITS)
    .map(|a| a.to_string())
    .collect()
}

/// Where root may not raise rlimits (sandboxes), podman must not try to: limits within the
/// usual ones.
const LIMITS: [&str; 4] = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

async fn get(addr: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.expect("the operator answers");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "runs the image against the emulators of this process")]
fn the_image_publishes_and_rotates_a_token_with_the_charts_security_settings() {
    let image = image();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let ground = Ground::start(GroundConfig::default()).await.unwrap();
        ground.namespace(NS).await.unwrap();
        let bot = ground.bot(NS, "bot").await.unwrap();

        // By name: the static binary resolves names without glibc's shared NSS modules.
        let slack_url = ground.slack.base_url().replace("127.0.0.1", "localhost");
        let mut options = OperatorOptions::new("unused", ground.kubeconfig(), slack_url);
        options.namespaces = vec![NS.into()];
        options.journal_dir = Some(JOURNAL.into());
        options.log_filter = "debug,hyper=info,h2=info,rustls=info,tower=info".into();
        let name = format!("slack-token-operator-test-{}", std::process::id());
        options.container = Some(Container {
            podman: "podman".into(),
            global_args: PODMAN.map(str::to_owned).to_vec(),
            run_args: as_the_chart_runs_it(&name),
            image: image.reference.clone(),
        });
        let started = Instant::now();
        let mut operator = OperatorProcess::spawn(&options).unwrap();
        let serving =
            operator.logged("serving /healthz, /readyz and /metrics", Duration::from_secs(60)).await;
        let addr = serving.unwrap().pointer("/fields/addr").and_then(|a| a.as_str()).unwrap().to_owned();
        eventually("/readyz 200", Duration::from_secs(60), Duration::from_millis(20), || async {
            (get(&addr, "/readyz").await.0 == 200).then_some(())
        })
        .await
        .unwrap();
        eprintln!("image: start to Ready in {:.2} s", started.elapsed().as_secs_f64());

        // Published, then rotated on request.
        let output = bot.output();
        let first = eventually(
            "the first token published",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || ground.secret_value(NS, &output, "token"),
        )
        .await
        .unwrap();
        let refreshes = ground.slack.refreshes(&bot.installation_id);
        ground.rotate_now(&bot, "image").await.unwrap();
        let second = eventually("a rotation", Duration::from_secs(60), Duration::from_millis(50), || async {
            let now = ground.secret_value(NS, &output, "token").await?;
            (now != first && ground.slack.refreshes(&bot.installation_id) > refreshes).then_some(now)
        })
        .await
        .unwrap();
        assert!(ground.is_healthy(&bot).await, "the published token works at Slack");

        assert_eq!(get(&addr, "/healthz").await.0, 200);
        let (code, metrics) = get(&addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(metrics.contains("slack_token_operator_"), "metrics are served: {metrics}");

        // SIGTERM, as the kubelet sends it: a clean exit, in time.
        operator.terminate().unwrap();
        let status = operator.exited(Duration::from_secs(30)).await.expect("exits after SIGTERM");
        assert!(status.success(), "exit status after SIGTERM: {status:?}");

        // The journal was usable (the operator logs no warning about it) and no token text was
        // logged at debug level.
        let logs = operator.logs();
        assert!(!logs.is_empty());
        let text: String = logs.iter().map(|l| format!("{l}\n")).collect();
        assert!(text.contains("starting controller"), "{text}");
        assert!(!text.contains("no --journal-dir"), "the journal was configured: {text}");
        let refresh = ground.secret_value(NS, &bot.creds(), "refreshToken").await.unwrap();
        for secret in [&first, &second, &refresh, &bot.app.client_secret] {
            assert!(!text.contains(secret.as_str()), "a secret appears in the container's log");
        }
        ground.shutdown().await;
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the image only")]
fn the_image_prints_its_version_and_revision() {
    let image = image();
    let mut args = vec!["run", "--rm", "--read-only", "--cap-drop", "ALL"];
    args.extend(LIMITS);
    args.extend([image.reference.as_str(), "--version"]);
    let out = podman(&args);
    let version = env!("CARGO_PKG_VERSION");
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(ROOT).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert!(out.contains(&format!("slack-token-operator {version} (revision {head}")), "{out}");
}

/// The image's configuration and its one layer: exactly the files the Dockerfile's final stage
/// copies, and nothing to run but the operator.
#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the image only")]
fn the_image_holds_the_binary_ca_roots_and_users_and_nothing_else() {
    let image = image();
    let config: serde_json::Value =
        serde_json::from_str(&podman(&["image", "inspect", &image.reference])).unwrap();
    let config = &config[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/slack-token-operator"]));
    assert_eq!(config["Cmd"], serde_json::json!(["run"]));
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");

    let files = layer_files(&image.archive);
    assert_eq!(
        files,
        ["etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "slack-token-operator"],
        "the files of the image"
    );
    let passwd = std::fs::read_to_string(Path::new(ROOT).join("image/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
}

/// Regular files of the image's layers, sorted (directories left out).
fn layer_files(archive: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| dir.path().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let mut files = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out =
            Command::new("tar").arg("-tvf").arg(blob(layer["digest"].as_str().unwrap())).output().unwrap();
        assert!(out.status.success(), "a layer is a tar (gzip or not)");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with('-') {
                let path = line.split_whitespace().last().unwrap();
                files.push(path.trim_start_matches("./").to_owned());
            }
        }
    }
    files.sort();
    files
}

/// What an image definition says: the build command and flags, the files, the user, the
/// entrypoint, the command, the port and the labels (`VERSION`/`REVISION` for the variables).
#[derive(Debug, PartialEq)]
struct Definition {
    cargo_build: String,
    rustflags: String,
    files: Vec<String>,
    user: String,
    entrypoint: String,
    cmd: String,
    port: String,
    labels: Vec<String>,
}

fn captures(text: &str, pattern: &str) -> Vec<String> {
    regex::Regex::new(pattern).unwrap().captures_iter(text).map(|c| c[1].trim().to_owned()).collect()
}

fn one(text: &str, pattern: &str) -> String {
    let all = captures(text, pattern);
    assert_eq!(all.len(), 1, "exactly one match of {pattern}: {all:?}");
    all.into_iter().next().unwrap()
}

fn variables(s: &str) -> String {
    s.replace("${VERSION}", "VERSION")
        .replace("$tag", "VERSION")
        .replace("${REVISION}", "REVISION")
        .replace("$revision", "REVISION")
}

fn dockerfile() -> Definition {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let final_stage = &text[text.rfind("\nFROM ").unwrap()..];
    let builds = captures(&text, r"(cargo build [^\n]*?) --target");
    assert_eq!(builds.len(), 2, "the stub build and the real one");
    assert_eq!(builds[0], builds[1], "the stub build builds what the real one does");
    let mut files = captures(final_stage, r"(?m)^COPY (?:--from=\S+ )?\S+ (\S+)$");
    files.sort();
    Definition {
        cargo_build: builds[0].clone(),
        rustflags: one(&text, r#"ENV RUSTFLAGS="([^"]*)""#),
        files,
        user: one(final_stage, r"(?m)^USER (\S+)$"),
        entrypoint: one(final_stage, r"(?m)^ENTRYPOINT (.+)$"),
        cmd: one(final_stage, r#"(?m)^CMD \["(\w+)"\]$"#),
        port: one(final_stage, r"(?m)^EXPOSE (\d+)$"),
        labels: captures(final_stage, r#"(org\.opencontainers\.image\.[a-z]+="[^"]*")"#)
            .iter()
            .map(|l| variables(&l.replace('"', "")))
            .collect(),
    }
}

fn script() -> Definition {
    let text = std::fs::read_to_string(Path::new(ROOT).join("scripts/image")).unwrap();
    let mut files = captures(&text, r#"install -D -m \d+ \S+ "\$rootfs(/\S+)""#);
    files.sort();
    Definition {
        cargo_build: one(&text, r#"(cargo build [^\n]*?) --target"#),
        rustflags: one(&text, r#"RUSTFLAGS="([^"]*)""#),
        files,
        user: one(&text, r"--user (\S+)"),
        entrypoint: one(&text, r"--entrypoint '([^']+)'"),
        cmd: one(&text, r"--cmd (\w+)"),
        port: one(&text, r"--port (\d+)"),
        labels: captures(&text, r#""(org\.opencontainers\.image\.[a-z]+=[^"]*)""#)
            .iter()
            .map(|l| variables(l))
            .collect(),
    }
}

#[test]
fn the_dockerfile_and_scripts_image_build_the_same_image() {
    let (dockerfile, script) = (dockerfile(), script());
    assert_eq!(dockerfile, script);
    assert!(dockerfile.cargo_build.contains("--no-default-features"), "no emulators in the image");
    assert!(dockerfile.rustflags.contains("crt-static"), "a static binary");
    assert_eq!(dockerfile.user, "65532:65532");
    let keys: Vec<&str> = dockerfile.labels.iter().map(|l| l.split('=').next().unwrap()).collect();
    for key in ["source", "version", "revision", "licenses"] {
        assert!(keys.contains(&format!("org.opencontainers.image.{key}").as_str()), "label {key}: {keys:?}");
    }
}

/// kind (`kind load image-archive`) and k3s (`k3s ctr images import`) load an archive with
/// containerd's importer: a private containerd takes ours under the name README tells people to
/// set in the chart.
#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the image only")]
fn containerd_imports_the_archive_under_the_name_the_readme_gives() {
    let image = image();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("containerd.sock");
    let mut daemon = Command::new("containerd")
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--address")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("containerd starts");
    let ctr = |args: &[&str]| {
        Command::new("ctr").arg("--address").arg(&socket).args(["-n", "k8s.io"]).args(args).output().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctr(&["version"]).status.success() {
        assert!(Instant::now() < deadline, "containerd answers");
        std::thread::sleep(Duration::from_millis(100));
    }
    let import = ctr(&["images", "import", "--all-platforms", "--digests", image.archive.to_str().unwrap()]);
    let list = ctr(&["images", "ls", "-q"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(import.status.success(), "ctr images import: {}", String::from_utf8_lossy(&import.stderr));
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    let expected = format!("localhost/slack-token-operator:{}", env!("CARGO_PKG_VERSION"));
    assert!(names.lines().any(|l| l.trim() == expected), "{expected} among {names}");
}
