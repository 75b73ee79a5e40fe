//! The config reloader with real processes, files and sockets: a shell script stands in for
//! `fluentd --dry-run` (it accepts unless the config says BAD, and can hang), a small HTTP
//! server for the reload endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice::bundle::{BundleFile, MANIFEST_FILE, Manifest, Placement, content_addressed_name};
use sluice::reload::{Method, Outcome, Reloader, Settings};

/// Writes a bundle the way the kubelet presents a projected volume: one file per key.
fn write_bundle(dir: &Path, config: &str, credential: &str) -> String {
    write_bundle_with(dir, config, credential, &[])
}

/// [`write_bundle`] with further revision files.
fn write_bundle_with(dir: &Path, config: &str, credential: &str, extra: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let credential_name = content_addressed_name("token", credential.as_bytes());
    let files = vec![
        BundleFile {
            name: "fluent.conf".into(),
            content: format!("@include slot-01.conf\n# reads {credential_name}\n").into_bytes(),
            placement: Placement::Revision,
        },
        BundleFile {
            name: "slot-01.conf".into(),
            content: config.as_bytes().to_vec(),
            placement: Placement::Revision,
        },
        BundleFile {
            name: credential_name,
            content: credential.as_bytes().to_vec(),
            placement: Placement::Shared,
        },
    ];
    let mut files = files;
    files.extend(extra.iter().map(|(name, content)| BundleFile {
        name: (*name).to_owned(),
        content: content.as_bytes().to_vec(),
        placement: Placement::Revision,
    }));
    for file in &files {
        std::fs::write(dir.join(&file.name), &file.content).unwrap();
    }
    let manifest = Manifest::of(&files);
    std::fs::write(dir.join(MANIFEST_FILE), manifest.to_json()).unwrap();
    manifest.revision
}

/// A reload endpoint counting its calls; `healthy` false answers 500.
struct Endpoint {
    url: String,
    calls: Arc<AtomicUsize>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

async fn endpoint() -> Endpoint {
    use axum::http::StatusCode;
    let calls = Arc::new(AtomicUsize::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (c, h) = (calls.clone(), healthy.clone());
    let router = axum::Router::new().route(
        "/api/config.reload",
        axum::routing::get(move || {
            let (c, h) = (c.clone(), h.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if h.load(Ordering::SeqCst) {
                    (StatusCode::OK, "{\"ok\":true}")
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Endpoint {
        url: format!("http://{address}/api/config.reload"),
        calls,
        healthy,
    }
}

struct Pod {
    _root: tempfile::TempDir,
    candidate: PathBuf,
    accepted: PathBuf,
    active: PathBuf,
    /// Every directory the check was run on, one line each.
    checked: PathBuf,
}

fn pod() -> Pod {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_owned();
    Pod {
        candidate: path.join("candidate"),
        accepted: path.join("accepted"),
        active: path.join("active"),
        checked: path.join("checked.log"),
        _root: root,
    }
}

/// The stand-in for `fluentd --dry-run`: logs which revision it checked, sleeps if the
/// config says SLOW or HANG, fails naming the problem if it says BAD.
/// Where the pod's buffers live (the reloader's `--buffer-dir`).
fn buffer_volume(pod: &Pod) -> PathBuf {
    pod.active.parent().unwrap().join("buffers")
}

/// Writes a candidate whose buffer list names the buffer `name` of the pod's buffer volume
/// (not created here); returns the buffer's directory and the candidate's revision.
fn bundle_with_buffer(pod: &Pod, name: &str) -> (PathBuf, String) {
    let buffer = buffer_volume(pod).join(name);
    let listed = format!("{}\n", buffer.display());
    let revision = write_bundle_with(
        &pod.candidate,
        "# with the flow\n",
        "s3cret",
        &[("buffers.list", &listed)],
    );
    (buffer, revision)
}

/// A reloader with the pod's buffer volume that drains through `flush_url`, its first
/// revision installed.
async fn draining_reloader(
    pod: &Pod,
    reload_url: &str,
    flush_url: String,
    quiet: Option<Duration>,
) -> Reloader {
    let mut settings = settings(pod, reload_url);
    settings.buffer_dir = Some(buffer_volume(pod));
    settings.flush_url = Some(flush_url);
    if let Some(quiet) = quiet {
        settings.dropped_buffer_quiet = quiet;
    }
    let mut reloader = Reloader::new(settings);
    reloader.prepare().await.unwrap();
    reloader
}

fn settings(pod: &Pod, reload_url: &str) -> Settings {
    let script = format!(
        "echo \"$1\" >> {checked}; \
         grep -q HANG \"$1/slot-01.conf\" && sleep 30; \
         grep -q SLOW \"$1/slot-01.conf\" && sleep 0.5; \
         if grep -q BAD \"$1/slot-01.conf\"; then \
           echo 'config error file=\"fluent.conf\" error_class=Fluent::ConfigError error=\"BAD in @flow-0123456789ab\"'; exit 1; \
         fi; \
         for f in $(grep -o '[0-9a-f]\\{{12\\}}-token' \"$1/fluent.conf\"); do test -f {shared}/$f || {{ echo missing $f >&2; exit 1; }}; done",
        checked = pod.checked.display(),
        shared = pod.active.join("shared").display(),
    );
    std::fs::create_dir_all(&pod.active).unwrap();
    Settings {
        candidate: pod.candidate.clone(),
        accepted: pod.accepted.clone(),
        active: pod.active.clone(),
        entry: "fluent.conf".into(),
        validate: vec![
            "sh".into(),
            "-c".into(),
            script,
            "check".into(),
            "{dir}".into(),
        ],
        validate_timeout: Duration::from_secs(2),
        reload_url: reload_url.to_owned(),
        reload_method: Method::Get,
        termination_log: Some(pod.active.join("termination-log")),
        buffer_dir: None,
        flush_url: None,
        dropped_buffer_quiet: Duration::from_millis(300),
    }
}

/// A pod whose init container ran on a candidate holding `config`: the reloader, its
/// revision.
async fn started(endpoint: &Endpoint, config: &str, credential: &str) -> (Pod, Reloader, String) {
    let pod = pod();
    let revision = write_bundle(&pod.candidate, config, credential);
    let mut reloader = Reloader::new(settings(&pod, &endpoint.url));
    assert_eq!(reloader.prepare().await.unwrap(), revision);
    (pod, reloader, revision)
}

fn current_config(pod: &Pod) -> String {
    std::fs::read_to_string(pod.active.join("current/slot-01.conf")).unwrap_or_default()
}

fn checks(pod: &Pod) -> Vec<String> {
    std::fs::read_to_string(&pod.checked)
        .unwrap_or_default()
        .lines()
        .map(|l| l.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn an_accepted_revision_becomes_current_and_the_process_reloads_once() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, first) = started(&endpoint, "# one flow\n", "s3cret").await;
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        0,
        "nothing runs yet at init"
    );

    let second = write_bundle(&pod.candidate, "# two flows\n", "s3cret");
    assert_eq!(
        reloader.step().await.unwrap(),
        Outcome::Applied(second.clone())
    );
    assert_eq!(current_config(&pod), "# two flows\n");
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 1);
    let status = reloader.status();
    assert_eq!(status.running.as_deref(), Some(second.as_str()));
    assert_eq!(status.accepted, vec![second.clone(), first]);
    assert_eq!(status.rejected, None);
    // Nothing new: no check, no reload.
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(checks(&pod).len(), 2);
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 1);
}

/// The init container (`sluice reload --once`, a process of its own) installs the first
/// revision; the sidecar, started afterwards, must report it as running and accepted, or the
/// operator never promotes a pod's first revision.
#[tokio::test]
async fn the_sidecar_reports_the_revision_the_init_container_installed() {
    let endpoint = endpoint().await;
    let pod = pod();
    let first = write_bundle(&pod.candidate, "# one flow\n", "s3cret");
    let settings = settings(&pod, &endpoint.url);
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["reload", "--once", "--entry", "fluent.conf"])
        .arg(format!("--reload-url={}", endpoint.url))
        .arg(format!("--candidate={}", pod.candidate.display()))
        .arg(format!("--accepted={}", pod.accepted.display()))
        .arg(format!("--active={}", pod.active.display()))
        .arg(format!(
            "--termination-log={}",
            pod.active.join("termination-log").display()
        ))
        .arg("--")
        .args(&settings.validate)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");

    let mut sidecar = Reloader::new(settings);
    assert_eq!(sidecar.step().await.unwrap(), Outcome::Idle);
    let status = sidecar.status();
    assert_eq!(status.running.as_deref(), Some(first.as_str()));
    assert_eq!(status.accepted, vec![first.clone()]);
    assert_eq!(status.candidate.as_deref(), Some(first.as_str()));
    assert_eq!(
        checks(&pod).len(),
        1,
        "the init container's check is not repeated"
    );
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        0,
        "the process loaded it when it started: no reload"
    );
    // The next revision goes through as usual and replaces it.
    let second = write_bundle(&pod.candidate, "# two flows\n", "s3cret");
    assert_eq!(
        sidecar.step().await.unwrap(),
        Outcome::Applied(second.clone())
    );
    assert_eq!(sidecar.status().accepted, vec![second, first]);
}

#[tokio::test]
async fn a_rejected_revision_never_replaces_the_running_one_and_is_not_retried() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, good) = started(&endpoint, "# good\n", "s3cret").await;

    let bad = write_bundle(&pod.candidate, "BAD\n", "s3cret");
    assert_eq!(
        reloader.step().await.unwrap(),
        Outcome::Rejected(bad.clone())
    );
    assert_eq!(current_config(&pod), "# good\n");
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 0);
    let status = reloader.status();
    assert_eq!(status.running.as_deref(), Some(good.as_str()));
    let rejected = status.rejected.unwrap();
    assert_eq!(rejected.revision, bad);
    assert!(
        rejected.error.contains("BAD in @flow-0123456789ab"),
        "{}",
        rejected.error
    );
    assert!(
        rejected.error.contains("exit status: 1"),
        "{}",
        rejected.error
    );

    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(checks(&pod).len(), 2, "a rejected revision is checked once");
    // Fixing the input produces a new revision, which goes through.
    let fixed = write_bundle(&pod.candidate, "# fixed\n", "s3cret");
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(fixed));
}

#[tokio::test]
async fn a_check_that_hangs_is_killed_and_counts_as_a_rejection() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, _) = started(&endpoint, "# good\n", "s3cret").await;
    let hung = write_bundle(&pod.candidate, "HANG\n", "s3cret");
    let started = std::time::Instant::now();
    assert_eq!(reloader.step().await.unwrap(), Outcome::Rejected(hung));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the whole group is killed"
    );
    let error = reloader.status().rejected.unwrap().error;
    assert!(error.contains("timed out after 2s"), "{error}");
    assert_eq!(current_config(&pod), "# good\n");
}

#[tokio::test]
async fn a_reload_endpoint_that_is_down_is_retried_until_it_answers() {
    let endpoint = endpoint().await;
    endpoint.healthy.store(false, Ordering::SeqCst);
    let (pod, mut reloader, _) = started(&endpoint, "# one\n", "s3cret").await;
    let next = write_bundle(&pod.candidate, "# two\n", "s3cret");
    assert_eq!(
        reloader.step().await.unwrap(),
        Outcome::AppliedReloadPending(next.clone())
    );
    // Already current: a process restart loads it even before the trigger succeeds.
    assert_eq!(current_config(&pod), "# two\n");
    let error = reloader.status().reload_error.unwrap();
    assert!(error.contains("500"), "{error}");
    endpoint.healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
    assert_eq!(reloader.status().reload_error, None);
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_reload_endpoint_is_reported() {
    let pod = pod();
    write_bundle(&pod.candidate, "# one\n", "s3cret");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/config.reload", closed.local_addr().unwrap());
    drop(closed);
    let mut reloader = Reloader::new(settings(&pod, &url));
    reloader.prepare().await.unwrap();
    let next = write_bundle(&pod.candidate, "# two\n", "s3cret");
    assert_eq!(
        reloader.step().await.unwrap(),
        Outcome::AppliedReloadPending(next)
    );
    assert!(reloader.status().reload_error.is_some());
}

#[tokio::test]
async fn of_rapid_successive_revisions_only_the_newest_is_applied() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, _) = started(&endpoint, "# zero\n", "s3cret").await;

    let first = write_bundle(&pod.candidate, "SLOW one\n", "s3cret");
    let candidate = pod.candidate.clone();
    // Two more revisions land while the first is being checked.
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let second = write_bundle(&candidate, "# two\n", "s3cret");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = write_bundle(&candidate, "# three\n", "s3cret");
        (second, third)
    });
    assert_eq!(reloader.step().await.unwrap(), Outcome::Superseded(first));
    let (second, third) = writer.await.unwrap();
    assert_eq!(
        reloader.step().await.unwrap(),
        Outcome::Applied(third.clone())
    );
    assert_eq!(current_config(&pod), "# three\n");
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        1,
        "one reload, for the newest"
    );
    let checked = checks(&pod);
    assert!(!checked.contains(&second), "{checked:?}");
    assert_eq!(checked.last(), Some(&third));
}

#[tokio::test]
async fn an_incomplete_bundle_is_left_alone_until_it_is_complete() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, _) = started(&endpoint, "# one\n", "s3cret").await;
    let next = write_bundle(&pod.candidate, "# two\n", "s3cret");
    // The kubelet has delivered the new manifest but an old slot.
    std::fs::write(pod.candidate.join("slot-01.conf"), "# one\n").unwrap();
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(checks(&pod).len(), 1);
    std::fs::write(pod.candidate.join("slot-01.conf"), "# two\n").unwrap();
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
}

#[tokio::test]
async fn init_falls_back_to_the_accepted_bundle_when_the_candidate_is_rejected() {
    let endpoint = endpoint().await;
    let pod = pod();
    let accepted = write_bundle(&pod.accepted, "# last good\n", "old-token");
    write_bundle(&pod.candidate, "BAD\n", "new-token");
    let mut reloader = Reloader::new(settings(&pod, &endpoint.url));
    assert_eq!(reloader.prepare().await.unwrap(), accepted);
    assert_eq!(current_config(&pod), "# last good\n");
    assert!(reloader.status().rejected.is_some());
}

#[tokio::test]
async fn init_keeps_a_complete_current_revision_across_container_restarts() {
    let endpoint = endpoint().await;
    let pod = pod();
    let first = write_bundle(&pod.candidate, "# one\n", "s3cret");
    Reloader::new(settings(&pod, &endpoint.url))
        .prepare()
        .await
        .unwrap();
    write_bundle(&pod.candidate, "# two\n", "s3cret");
    assert_eq!(
        Reloader::new(settings(&pod, &endpoint.url))
            .prepare()
            .await
            .unwrap(),
        first
    );
    assert_eq!(checks(&pod).len(), 1);
}

#[tokio::test]
async fn garbage_collection_keeps_the_current_and_previous_revisions_and_their_files() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, one) = started(&endpoint, "# one\n", "first").await;
    let two = write_bundle(&pod.candidate, "# two\n", "second");
    reloader.step().await.unwrap();
    let three = write_bundle(&pod.candidate, "# three\n", "third");
    reloader.step().await.unwrap();
    let revisions: Vec<String> = std::fs::read_dir(pod.active.join("revisions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        revisions.contains(&two) && revisions.contains(&three),
        "{revisions:?}"
    );
    assert!(!revisions.contains(&one), "{revisions:?}");
    let shared: Vec<String> = std::fs::read_dir(pod.active.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        shared.contains(&content_addressed_name("token", b"third")),
        "{shared:?}"
    );
    assert!(
        shared.contains(&content_addressed_name("token", b"second")),
        "{shared:?}"
    );
    assert!(
        !shared.contains(&content_addressed_name("token", b"first")),
        "{shared:?}"
    );
}

/// The real binary, as the init container runs it: neither bundle usable → exit 1 and the
/// reason in the termination log.
#[test]
fn sluice_reload_once_fails_with_the_reason_when_nothing_is_usable() {
    let pod = pod();
    write_bundle(&pod.candidate, "BAD\n", "s3cret");
    let settings = settings(&pod, "http://127.0.0.1:1/unused");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "reload",
            "--once",
            "--entry",
            "fluent.conf",
            "--reload-url",
            "http://127.0.0.1:1/",
        ])
        .arg(format!("--candidate={}", pod.candidate.display()))
        .arg(format!("--accepted={}", pod.accepted.display()))
        .arg(format!("--active={}", pod.active.display()))
        .arg(format!(
            "--termination-log={}",
            pod.active.join("termination-log").display()
        ))
        .arg("--")
        .args(&settings.validate)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let reason = std::fs::read_to_string(pod.active.join("termination-log")).unwrap();
    assert!(reason.contains("was rejected"), "{reason}");
    assert!(reason.contains("BAD in @flow-0123456789ab"), "{reason}");
    assert!(reason.contains("the accepted one is absent"), "{reason}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no usable configuration"));
}

#[test]
fn sluice_copy_binary_installs_an_executable_copy() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let destination = dir.path().join("sluice");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("copy-binary")
        .arg(&destination)
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(&destination)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let version = std::process::Command::new(&destination)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sluice "));
}

#[test]
fn only_chunk_files_count_as_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("flow-0123456789ab-ba9876543210");
    std::fs::create_dir_all(&flow).unwrap();
    for name in [
        "buffer.b5f1.log",
        "buffer.b5f1.log.meta",
        "buffer.q5f2.log",
        "buffer.q5f2.log.meta",
    ] {
        std::fs::write(flow.join(name), "x").unwrap();
    }
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    assert_eq!(sluice::reload::count_chunks(dir.path()), 2);
}

/// Draining: the status server turns not ready and the reloader asks fluentd to flush until
/// the buffer volume is empty.
#[tokio::test]
async fn a_drain_reports_not_ready_and_flushes_until_no_chunk_is_left() {
    let endpoint = endpoint().await;
    let pod = pod();
    write_bundle(&pod.candidate, "# one\n", "s3cret");
    let buffers = buffer_volume(&pod);
    std::fs::create_dir_all(&buffers).unwrap();
    std::fs::write(buffers.join("buffer.b1.log"), "x").unwrap();
    // The "flush" endpoint is the counting one; what it does to the chunks is simulated below.
    let mut reloader = draining_reloader(&pod, &endpoint.url, endpoint.url.clone(), None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(sluice::reload::serve_status(
        listener,
        reloader.status_handle(),
        std::future::pending(),
    ));
    let health = format!("http://{address}/healthz");
    let (code, _) = sluice::reload::http::request(&health, Method::Get, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let (code, body) = sluice::reload::http::request(
        &format!("http://{address}/drain"),
        Method::Post,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let status: sluice::bundle::ReloaderStatus = serde_json::from_slice(&body).unwrap();
    assert!(status.draining);
    let (code, _) = sluice::reload::http::request(&health, Method::Get, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(code, 503, "a draining pod leaves the Service");
    reloader.step().await.unwrap();
    assert_eq!(reloader.status().buffered_chunks, Some(1));
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 1, "asked to flush");
    std::fs::remove_file(buffers.join("buffer.b1.log")).unwrap();
    reloader.step().await.unwrap();
    assert_eq!(reloader.status().buffered_chunks, Some(0));
    assert_eq!(
        endpoint.calls.load(Ordering::SeqCst),
        1,
        "nothing left to flush"
    );
}

/// The command lines the builder puts in the pods parse as `sluice reload` flags: run with the
/// real binary (nothing is mounted here, so it finds no configuration and says so, exit 1,
/// rather than failing to parse, exit 2).
#[test]
fn the_reloader_command_lines_the_pods_run_are_accepted_by_the_binary() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let loaded = sluice::cli::input::load(&[examples]).unwrap();
    let pipeline = sluice::model::resolve(&loaded.objects.inventory())
        .pipelines
        .remove(0);
    let children = sluice::build::objects(&pipeline, &sluice::pki::PkiPlan::default()).unwrap();
    let mut checked = 0;
    for child in children.iter().filter(|c| {
        matches!(
            c.kind,
            sluice::build::ChildKind::DaemonSet | sluice::build::ChildKind::StatefulSet
        )
    }) {
        let pod = &child.object.data["spec"]["template"]["spec"];
        let containers = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["containers"].as_array().unwrap());
        for container in containers.filter(|c| c["name"] == "config-init") {
            let argv: Vec<String> = container["command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(argv[0], sluice::layout::SLUICE_BINARY);
            let scratch = tempfile::tempdir().unwrap();
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(argv[1..].iter().map(|arg| {
                    // Keep the flags, point the directories somewhere writable.
                    arg.replace("/sluice/", &format!("{}/", scratch.path().display()))
                }))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{argv:?}: {stderr}");
            assert!(stderr.contains("no usable configuration"), "{stderr}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "the agent's and the aggregator's");
}

/// A drain's flush request never follows a reload in the same pass: fluentd flushes from a
/// thread of its own, and one that runs while the reload shuts the old buffers down fails
/// with "undefined method `empty?' for nil" (Buffer#terminate). The flush waits for the next
/// pass.
#[tokio::test]
async fn a_drain_never_asks_for_a_flush_right_behind_a_reload() {
    let reload = endpoint().await;
    let flush = endpoint().await;
    let pod = pod();
    write_bundle(&pod.candidate, "# one\n", "s3cret");
    let buffers = buffer_volume(&pod);
    std::fs::create_dir_all(&buffers).unwrap();
    std::fs::write(buffers.join("buffer.b1.log"), "x").unwrap();
    let mut reloader = draining_reloader(&pod, &reload.url, flush.url.clone(), None).await;
    reloader.status_handle().lock().unwrap().draining = true;

    let next = write_bundle(&pod.candidate, "# two\n", "s3cret");
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
    assert_eq!(reload.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        flush.calls.load(Ordering::SeqCst),
        0,
        "not in the pass that reloaded"
    );
    assert_eq!(reloader.status().buffered_chunks, Some(1));
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(
        flush.calls.load(Ordering::SeqCst),
        1,
        "the next pass flushes"
    );
    assert_eq!(reload.calls.load(Ordering::SeqCst), 1);
}

/// A revision that drops an output (a flow removed): its buffer still holds chunks the old
/// process took, and no plugin of the new one would ever flush them. The reloader has the
/// process flush and waits until they are gone before it loads the revision.
/// fluentd's "flush every buffer" endpoint: answers at once and runs `flushing` in the
/// background with the request's number (from 0), as fluentd flushes from a thread of its
/// own. Returns its URL and the count of requests.
async fn flush_endpoint<F, Fut>(flushing: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let flushes = Arc::new(AtomicUsize::new(0));
    let counter = flushes.clone();
    let router = axum::Router::new().route(
        "/api/plugins.flushBuffers",
        axum::routing::get(move || {
            let (counter, flushing) = (counter.clone(), flushing.clone());
            async move {
                let number = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(flushing(number));
                (axum::http::StatusCode::OK, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/api/plugins.flushBuffers",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, flushes)
}

#[tokio::test]
async fn the_buffers_a_revision_drops_are_flushed_before_it_is_loaded() {
    let reload = endpoint().await;
    let pod = pod();
    let buffers = buffer_volume(&pod);
    let kept = buffers.join("flow-aaaaaaaaaaaa-bbbbbbbbbbbb");
    let dropped = buffers.join("flow-cccccccccccc-dddddddddddd");
    for dir in [&kept, &dropped] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("buffer.q1.log"), "x").unwrap();
    }
    let both = format!("{}\n{}\n", kept.display(), dropped.display());
    write_bundle_with(
        &pod.candidate,
        "# two flows\n",
        "s3cret",
        &[("buffers.list", &both)],
    );
    // fluentd flushing takes a moment, then the chunk is gone.
    let chunk = dropped.join("buffer.q1.log");
    let (flush_url, flushes) = flush_endpoint(move |_| {
        let chunk = chunk.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = std::fs::remove_file(chunk);
        }
    })
    .await;
    let mut reloader = draining_reloader(&pod, &reload.url, flush_url, None).await;

    // Same buffers: no flush.
    let same = write_bundle_with(
        &pod.candidate,
        "# edited\n",
        "s3cret",
        &[("buffers.list", &both)],
    );
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(same));
    assert_eq!(flushes.load(Ordering::SeqCst), 0);

    let one = format!("{}\n", kept.display());
    let next = write_bundle_with(
        &pod.candidate,
        "# one flow\n",
        "s3cret",
        &[("buffers.list", &one)],
    );
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
    assert!(flushes.load(Ordering::SeqCst) >= 1, "asked to flush first");
    assert_eq!(
        sluice::reload::count_chunks(&dropped),
        0,
        "the process reloads only once the dropped buffer is empty"
    );
    assert_eq!(
        sluice::reload::count_chunks(&kept),
        1,
        "kept buffers are left alone"
    );
    assert_eq!(reload.calls.load(Ordering::SeqCst), 2);
}

/// A removed flow's route stays in the agents' routing tables until their Secret arrives, so
/// records keep reaching the old process's buffer for it after a first flush emptied it
/// (measured on real fluent-bit and fluentd: a chunk written 90 ms after the buffer was found
/// empty was stranded). The revision is loaded only once that buffer has stayed empty and
/// unwritten for the quiet period, and whatever arrived meanwhile was flushed.
#[tokio::test]
async fn a_dropped_buffer_still_written_to_is_flushed_until_it_stays_quiet() {
    let reload = endpoint().await;
    let pod = pod();
    let (dropped, _) = bundle_with_buffer(&pod, "out-cccccccccccc");
    std::fs::create_dir_all(&dropped).unwrap();
    std::fs::write(dropped.join("buffer.q1.log"), "x").unwrap();
    // fluentd flushing: every chunk present is gone a moment after the request. After the
    // first flush, an agent still routing to the removed flow writes one more chunk.
    let late_written = Arc::new(tokio::sync::Notify::new());
    let (dir, late) = (dropped.clone(), late_written.clone());
    let (flush_url, flushes) = flush_endpoint(move |number| {
        let (dir, late) = (dir.clone(), late.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
            if number == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(dir.join("buffer.b2.log"), "late").unwrap();
                late.notify_one();
            }
        }
    })
    .await;
    let mut reloader =
        draining_reloader(&pod, &reload.url, flush_url, Some(Duration::from_secs(1))).await;

    let next = write_bundle_with(
        &pod.candidate,
        "# without it\n",
        "s3cret",
        &[("buffers.list", "")],
    );
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
    // Reloading before the late chunk came would leave it behind: wait for it either way.
    tokio::time::timeout(Duration::from_secs(10), late_written.notified())
        .await
        .expect("the late chunk was written");
    assert_eq!(
        flushes.load(Ordering::SeqCst),
        2,
        "the late chunk was flushed too"
    );
    assert_eq!(
        sluice::reload::count_chunks(&dropped),
        0,
        "nothing is left behind in the dropped buffer"
    );
    assert_eq!(reload.calls.load(Ordering::SeqCst), 1);
}

/// The same revision published again (a Flow deleted and added back) reloads nothing, and the
/// status says which publication the pod has seen, so the operator can tell it from the first.
#[tokio::test]
async fn a_revision_published_again_is_reported_with_its_number_and_not_reloaded() {
    let endpoint = endpoint().await;
    let (pod, mut reloader, first) = started(&endpoint, "# one flow\n", "s3cret").await;
    let republish = |number: u64| {
        let path = pod.candidate.join(MANIFEST_FILE);
        let mut manifest = Manifest::from_json(&std::fs::read(&path).unwrap()).unwrap();
        manifest.sequence = number;
        std::fs::write(&path, manifest.to_json()).unwrap();
    };
    republish(7);
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    let status = reloader.status();
    assert_eq!(status.candidate.as_deref(), Some(first.as_str()));
    assert_eq!(status.candidate_sequence, Some(7));
    republish(9);
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(reloader.status().candidate_sequence, Some(9));
    assert_eq!(endpoint.calls.load(Ordering::SeqCst), 0);
}

/// An agent that gets a route late may start writing to its buffer only after the pods saw
/// the revision removing it; a buffer idle so far (here never created) is not quiet yet
/// (seen on real fluentd: a chunk arrived 9 s after the route left the agents' Secret, to a
/// pod that had loaded the revision at once, and went to the error output).
#[tokio::test]
async fn a_dropped_buffer_idle_until_the_revision_came_is_still_waited_for() {
    let reload = endpoint().await;
    let pod = pod();
    let (dropped, _) = bundle_with_buffer(&pod, "out-eeeeeeeeeeee");
    let dir = dropped.clone();
    let (flush_url, flushes) = flush_endpoint(move |_| {
        let dir = dir.clone();
        async move {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    })
    .await;
    let mut reloader =
        draining_reloader(&pod, &reload.url, flush_url, Some(Duration::from_secs(2))).await;

    let next = write_bundle_with(
        &pod.candidate,
        "# without it\n",
        "s3cret",
        &[("buffers.list", "")],
    );
    let late = dropped.clone();
    let agent = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        std::fs::create_dir_all(&late).unwrap();
        std::fs::write(late.join("buffer.b1.log"), "late").unwrap();
    });
    assert_eq!(reloader.step().await.unwrap(), Outcome::Applied(next));
    agent.await.unwrap();
    assert!(
        flushes.load(Ordering::SeqCst) >= 1,
        "the late chunk was flushed"
    );
    assert_eq!(
        sluice::reload::count_chunks(&dropped),
        0,
        "nothing is left behind in the dropped buffer"
    );
}

/// A revision dropping a buffer waits for it to stay quiet; a change taken back meanwhile
/// (the Flow added again: the candidate is what runs) is not loaded at all, so the workers do
/// not restart twice for nothing.
#[tokio::test]
async fn a_change_taken_back_while_its_buffers_drain_is_not_loaded() {
    let reload = endpoint().await;
    let pod = pod();
    let (dropped, first) = bundle_with_buffer(&pod, "out-ffffffffffff");
    let (flush_url, _) = flush_endpoint(|_| async {}).await;
    let mut reloader =
        draining_reloader(&pod, &reload.url, flush_url, Some(Duration::from_secs(1))).await;

    let without = write_bundle_with(
        &pod.candidate,
        "# without it\n",
        "s3cret",
        &[("buffers.list", "")],
    );
    let candidate = pod.candidate.clone();
    let listed_again = format!("{}\n", dropped.display());
    let taken_back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        write_bundle_with(
            &candidate,
            "# with the flow\n",
            "s3cret",
            &[("buffers.list", &listed_again)],
        )
    });
    assert_eq!(reloader.step().await.unwrap(), Outcome::Superseded(without));
    assert_eq!(taken_back.await.unwrap(), first);
    assert_eq!(reloader.step().await.unwrap(), Outcome::Idle);
    assert_eq!(current_config(&pod), "# with the flow\n");
    assert_eq!(reload.calls.load(Ordering::SeqCst), 0);
    assert_eq!(reloader.status().running.as_deref(), Some(first.as_str()));
}
