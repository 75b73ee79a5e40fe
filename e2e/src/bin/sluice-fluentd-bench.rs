//! The rendered aggregator configuration on real fluentd (operator/benches/README.md,
//! "The aggregator on real fluentd"). Builds nothing and downloads nothing: it takes the
//! `fluentd` (and, to feed records, `fluent-bit`) binaries as arguments.
//!
//! For each flow count it renders the aggregator's bundle of a generated Logging with the
//! library (the operator's own resolve and render), writes it to a work directory and
//! 1. runs `fluentd --dry-run` on it (what the reloader runs before every reload) and reports
//!    wall time and peak RSS, beside the capacity model's estimates for the same pipeline
//!    (the check's memory and time, fluentd's peak while reloading; unrounded);
//! 2. runs fluentd on it, with the TLS input swapped for a plain forward input on loopback
//!    and every output instance swapped for a `file` output with a memory buffer, and
//!    reports the time until it listens, RSS and threads of supervisor and worker, idle CPU,
//!    and a reload as the reloader triggers it, a worker restart through fluentd's RPC
//!    `/api/config.reload` (time until the new worker runs, RSS after);
//! 3. with `--fluent-bit`: feeds agent-shaped records tagged `sluice.<route>` through real
//!    fluent-bit (a tail input per route, tagged as the agent tags them) and reports records per
//!    fluentd CPU-second against a routing-free ceiling (the same records, one tag, one
//!    output), checking that every flow received exactly its records, once.
//!
//! ```sh
//! cargo build --release -p e2e --bin sluice-fluentd-bench
//! target/release/sluice-fluentd-bench --fluentd /path/to/fluentd --fluent-bit /path/to/fluent-bit \
//!     --flows 10,100,1000,3000,10000 --shape shared
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// Flows spread over ten namespaces, each namespace's Flows sending to its one
    /// Elasticsearch Output.
    Shared,
    /// Every Flow with an Elasticsearch Output of its own, all equal within a namespace.
    OwnEs,
    /// Every Flow with a null Output of its own.
    OwnNull,
    /// Every Flow with an Elasticsearch Output of its own, each with its own index.
    DistinctEs,
    /// As `shared`, every Flow with a grep filter of its own.
    Filter,
}

#[derive(Parser, Debug)]
#[command(about = "The rendered aggregator configuration on real fluentd")]
struct Args {
    /// The `fluentd` executable (1.17 with the aggregator image's plugins).
    #[arg(long)]
    fluentd: PathBuf,
    /// The `fluent-bit` executable; without it no records are fed.
    #[arg(long)]
    fluent_bit: Option<PathBuf>,
    /// Flow counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,3000,10000")]
    flows: Vec<usize>,
    #[arg(long, value_enum, default_value_t = Shape::Shared)]
    shape: Shape,
    /// Records fed per run.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 20)]
    idle: u64,
    /// Skip the run (dry-run only).
    #[arg(long)]
    check_only: bool,
    /// First of the loopback ports used (forward, metrics, RPC).
    #[arg(long, default_value_t = 26240)]
    port_base: u16,
    /// Work directory (kept afterwards for inspection).
    #[arg(long, default_value = "/tmp/sluice-fluentd-bench")]
    work: PathBuf,
}

const NAMESPACES: usize = 10;

/// The generated Logging, its namespaces and `n` Flows in the given shape. Limits are
/// raised so nothing is left out: the bench measures what the capacity model estimates.
fn objects(n: usize, shape: Shape) -> Result<sluice::model::Objects> {
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("team-{i}")).collect();
    let logging = serde_json::from_value(json!({
        "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
        "metadata": {"name": "bench", "uid": "u-bench"},
        "spec": {
            "controlNamespace": "logging",
            "watchNamespaces": namespaces,
            "tenantLimits": {"maxOutputsPerNamespace": 1000},
            "aggregator": {
                "bufferVolume": {"persistentVolumeClaim": {"size": "1Ti"}},
                "resources": {"limits": {"memory": "64Gi"}},
                "configCheck": {"memoryLimit": "64Gi", "timeoutSeconds": 3600},
            },
        },
    }))?;
    let mut objects = sluice::model::Objects {
        loggings: vec![logging],
        ..Default::default()
    };
    let es = |index: &str| json!({"elasticsearch": {"hosts": ["https://es.logging:9200"], "indexName": index}});
    for namespace in &namespaces {
        objects.namespaces.push(serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )?);
        if matches!(shape, Shape::Shared | Shape::Filter) {
            objects.outputs.push(serde_json::from_value(json!({
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Output",
                "metadata": {"name": "es", "namespace": namespace}, "spec": es("logs"),
            }))?);
        }
    }
    for i in 0..n {
        let namespace = &namespaces[i % NAMESPACES];
        let name = format!("flow-{i:05}");
        let output = match shape {
            Shape::Shared | Shape::Filter => "es".to_owned(),
            Shape::OwnEs | Shape::OwnNull | Shape::DistinctEs => {
                let spec = match shape {
                    Shape::OwnNull => json!({"nullOutput": {}}),
                    Shape::DistinctEs => es(&name),
                    _ => es("logs"),
                };
                objects.outputs.push(serde_json::from_value(json!({
                    "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Output",
                    "metadata": {"name": name, "namespace": namespace}, "spec": spec,
                }))?);
                name.clone()
            }
        };
        let filters = if shape == Shape::Filter {
            json!([{"grep": {"exclude": [{"key": "log", "pattern": "debug"}]}}])
        } else {
            json!([])
        };
        objects.flows.push(serde_json::from_value(json!({
            "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Flow",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {
                "match": [
                    {"exclude": {"labels": {"noise": "true"}}},
                    {"select": {"labels": {"app": "web"}}},
                ],
                "filters": filters,
                "localOutputRefs": [output],
            },
        }))?);
    }
    Ok(objects)
}

/// Ports of one run.
#[derive(Clone, Copy)]
struct Ports {
    forward: u16,
    metrics: u16,
    rpc: u16,
}

/// The in-pod paths and ports of the rendered text, moved to the work directory and
/// loopback; the TLS transport removed (the agents' TLS is not what is measured).
fn localize(text: &str, dir: &Path, ports: Ports) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tls = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed == "<transport tls>" {
            in_tls = true;
            continue;
        }
        if in_tls {
            in_tls = trimmed != "</transport>";
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let buffers = dir.join("buffers");
    let shared = dir.join("shared");
    out.replace(
        &format!("port {}", sluice::layout::DEFAULT_AGGREGATOR_PORT),
        &format!("port {}", ports.forward),
    )
    .replace(
        &format!("port {}", sluice::layout::AGGREGATOR_METRICS_PORT),
        &format!("port {}", ports.metrics),
    )
    .replace(
        sluice::layout::AGGREGATOR_RPC_ENDPOINT,
        &format!("127.0.0.1:{}", ports.rpc),
    )
    .replace("bind 0.0.0.0", "bind 127.0.0.1")
    .replace(
        &format!("\"{}/", sluice::layout::AGGREGATOR_BUFFER_DIR),
        &format!("\"{}/", buffers.display()),
    )
    .replace(
        &format!("{}/", sluice::layout::RELOAD_SHARED_DIR),
        &format!("{}/", shared.display()),
    )
}

/// Every output instance's plugin replaced by a `file` output with a memory buffer that
/// writes `time<TAB>tag<TAB>record` lines below `out`, so deliveries can be counted per tag.
fn file_outputs(text: &str, out: &Path) -> String {
    let mut result = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        result.push_str(line);
        result.push('\n');
        let Some(label) = line
            .strip_prefix("<label @")
            .and_then(|rest| rest.strip_suffix('>'))
            .filter(|label| label.starts_with(sluice::render::fluentd::INSTANCE_PREFIX))
        else {
            continue;
        };
        // `<match **>`, then the plugin up to its `</match>`.
        if let Some(open) = lines.next() {
            result.push_str(open);
            result.push('\n');
        }
        for skipped in lines.by_ref() {
            if skipped == "  </match>" {
                break;
            }
        }
        let _ = write!(
            result,
            "    @type file\n    @id {label}\n    path \"{}/{label}\"\n    append true\n    <buffer time>\n      @type memory\n      timekey 1h\n      flush_mode interval\n      flush_interval 1s\n      chunk_limit_size 8m\n      total_limit_size 1g\n      overflow_action block\n    </buffer>\n  </match>\n",
            out.display()
        );
    }
    result
}

/// Writes the rendered bundle below `dir`: the revision's files in `rev/`, shared files in
/// `shared/`. Returns the main file.
fn write_bundle(
    files: &sluice::render::fluentd::AggregatorFiles,
    dir: &Path,
    ports: Ports,
    outputs: Option<&Path>,
) -> Result<PathBuf> {
    let rev = dir.join("rev");
    for sub in ["rev", "shared", "buffers", "out"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    for file in files.main.iter().chain(&files.slots) {
        let mut text = localize(&file.content, dir, ports);
        if let Some(out) = outputs {
            text = file_outputs(&text, out);
        }
        std::fs::write(rev.join(&file.name), text)?;
    }
    for file in &files.shared {
        std::fs::write(dir.join("shared").join(&file.name), &file.content)?;
    }
    Ok(rev.join(sluice::layout::AGGREGATOR_CONFIG_FILE))
}

/// Wall time and peak RSS of one process run to its end.
fn run_measured(mut command: Command) -> Result<(Duration, u64, bool, String)> {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = i32::try_from(child.id())?;
    // fluentd logs to stdout, Ruby's exceptions (a rejected configuration) go to stderr.
    let read = |mut stream: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.context("stdout")?));
    let stderr = read(Box::new(child.stderr.context("stderr")?));
    let mut status = 0;
    // SAFETY: `rusage` is plain data; wait4 fills it for the child we spawned.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid we hold and which nothing else waits for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("wait4 failed");
    }
    let elapsed = started.elapsed();
    let output = stdout.join().unwrap_or_default() + &stderr.join().unwrap_or_default();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((
        elapsed,
        u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        ok,
        output,
    ))
}

/// The shared key the rendered forward input asks of its clients (in the pod, from a Secret).
const SHARED_KEY: &str = "bench-shared-key";

/// What a fluentd worker logs once it has configured and started every plugin.
const WORKER_RUNNING: &str = "fluentd worker is now running";

fn fluentd_command(fluentd: &Path, main: &Path, dry_run: bool) -> Command {
    let mut command = Command::new(fluentd);
    command.env(sluice::layout::SHARED_KEY_ENV, SHARED_KEY);
    if dry_run {
        command.arg("--dry-run");
    }
    let rev = main.parent().unwrap_or(Path::new("."));
    command
        .arg("-c")
        .arg(main)
        .arg("-r")
        .arg(rev.join(sluice::layout::AGGREGATOR_REGEXP_TIMEOUT_FILE));
    command
}

/// The processes of a session: the supervisor and its workers.
fn session_processes(leader: u32) -> Vec<u32> {
    let mut found = vec![leader];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == leader {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 6 (session id), after the parenthesised command.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(3).and_then(|s| s.parse::<u32>().ok()) == Some(leader) {
            found.push(pid);
        }
    }
    found
}

fn status_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with(&format!("{key}:")))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) of the processes.
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks)
        })
        .sum()
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(900)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A running fluentd in its own session, killed when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: signals the process group of the session we started.
            unsafe {
                libc::kill(-pid, libc::SIGTERM);
            }
            for _ in 0..600 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // SAFETY: as above.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

fn start(fluentd: &Path, main: &Path, dir: &Path, port: u16) -> Result<(Running, Duration)> {
    let log = dir.join("fluentd.log");
    let mut command = fluentd_command(fluentd, main, false);
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::inherit());
    // SAFETY: setsid in the child before exec, so the supervisor and its workers form a
    // session the bench can measure and stop as a whole.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let started = Instant::now();
    let mut running = Running {
        child: command.spawn()?,
        log,
    };
    while !listening(port) {
        if let Some(status) = running.child.try_wait()? {
            bail!(
                "fluentd exited with {status}; see {}",
                running.log.display()
            );
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("fluentd did not listen within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((running, started.elapsed()))
}

/// Resident memory (MiB) of each process and their threads.
fn memory(leader: u32) -> (Vec<u64>, u64) {
    let pids = session_processes(leader);
    let rss = pids
        .iter()
        .map(|pid| status_field(*pid, "VmRSS") / 1024)
        .collect();
    let threads = pids.iter().map(|pid| status_field(*pid, "Threads")).sum();
    (rss, threads)
}

fn count_in_log(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .map(|text| text.matches(needle).count())
        .unwrap_or(0)
}

/// `count` records spread evenly over `routes`, each with a sequence number, written as JSON
/// lines into one file per route (`<dir>/<route>.log`), which fluent-bit's tail input tags
/// `sluice.<route>` as the agent tags a flow's records. (Re-tagging one file with
/// rewrite_tag, as the agent does, loses records beyond about a thousand routes: the agent's
/// own issue, not what this bench measures.)
fn write_records(dir: &Path, routes: &[String], count: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let per_route = count.div_ceil(routes.len().max(1));
    let mut seq = 0;
    for route in routes {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{route}.log")))?);
        for _ in 0..per_route {
            if seq == count {
                break;
            }
            writeln!(
                out,
                "{{\"seq\":{seq},\"log\":\"GET /index.html 200 record {seq} of the bench\",\"stream\":\"stdout\",\"kubernetes\":{{\"namespace_name\":\"team-0\",\"pod_name\":\"web-0\",\"container_name\":\"web\",\"labels\":{{\"app\":\"web\"}}}}}}"
            )?;
            seq += 1;
        }
    }
    Ok(())
}

/// Starts fluent-bit reading the records files into fluentd's forward input. It keeps
/// running; the caller stops it once everything arrived.
fn feed(fluent_bit: &Path, dir: &Path, records: &Path, port: u16) -> Result<Child> {
    let config = dir.join("feeder.yaml");
    let yaml = format!(
        r#"parsers:
  - name: json
    format: json
service:
  flush: 1
  grace: 30
  log_level: warn
  # A chunk finding all 16 connections busy fails ("no upstream connections available") and
  # is retried after a backoff of 5 s doubling up to 2000 s by default (flb_scheduler.h):
  # with a chunk per route, thousands wait minutes for a free connection while the
  # connections idle, and the feeding stalls long enough to be cut off as lost.
  scheduler.base: 1
  scheduler.cap: 2
pipeline:
  inputs:
    - name: tail
      path: {records}/*.log
      read_from_head: true
      parser: json
      tag: sluice.<route>
      tag_regex: (?<route>flow-[0-9a-f]{{12}})\.log$
      refresh_interval: 1
      buffer_chunk_size: 1M
      buffer_max_size: 4M
      mem_buf_limit: 512M
  outputs:
    - name: forward
      match: sluice.*
      host: 127.0.0.1
      port: {port}
      require_ack_response: true
      retry_limit: false
      shared_key: {SHARED_KEY}
      self_hostname: bench-feeder
      retain_metadata_in_forward_mode: false
      # One connection per chunk otherwise: thousands of routes open thousands of
      # connections at once, more than fluentd's listen backlog.
      net.max_worker_connections: 16
"#,
        records = records.display()
    );
    std::fs::write(&config, yaml)?;
    Ok(Command::new(fluent_bit)
        .arg("-c")
        .arg(&config)
        .stdout(std::fs::File::create(dir.join("fluent-bit.log"))?)
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// Lines delivered per tag and whether any sequence number arrived twice.
fn delivered(out: &Path) -> Result<(BTreeMap<String, usize>, usize, usize)> {
    let mut per_tag: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut total = 0;
    for entry in std::fs::read_dir(out)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let mut parts = line.splitn(3, '\t');
            let (Some(_), Some(tag), Some(record)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            total += 1;
            *per_tag.entry(tag.to_owned()).or_default() += 1;
            let seq = serde_json::from_str::<serde_json::Value>(record)
                .ok()
                .and_then(|v| v["seq"].as_u64());
            if let Some(seq) = seq
                && !seen.insert(seq)
            {
                duplicates += 1;
            }
        }
    }
    Ok((per_tag, total, duplicates))
}

/// What one feeding delivered, and fluentd's CPU seconds spent on it (less its idle rate).
struct Fed {
    cpu: f64,
    per_tag: BTreeMap<String, usize>,
    total: usize,
    duplicates: usize,
}

/// Feeds records through fluent-bit into one fluentd.
struct Feeder<'a> {
    fluent_bit: &'a Path,
    records: usize,
    ports: Ports,
}

impl Feeder<'_> {
    /// Feeds the records of `routes` and waits until all arrived (or nothing moves for a
    /// minute).
    fn run(&self, dir: &Path, running: &Running, routes: &[String], idle_rate: f64) -> Result<Fed> {
        let records = dir.join("records");
        write_records(&records, routes, self.records)?;
        let pids = session_processes(running.child.id());
        let cpu_before = cpu_seconds(&pids);
        let started = Instant::now();
        let mut feeder = feed(self.fluent_bit, dir, &records, self.ports.forward)?;
        let out = dir.join("out");
        let mut last = (0, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let (_, total, _) = delivered(&out)?;
            if total >= self.records {
                break;
            }
            if total != last.0 {
                last = (total, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&pids) - cpu_before - idle_rate * wall;
        let _ = feeder.kill();
        let _ = feeder.wait();
        let (per_tag, total, duplicates) = delivered(&out)?;
        Ok(Fed {
            cpu: cpu.max(0.001),
            per_tag,
            total,
            duplicates,
        })
    }
}

/// The routing-free ceiling: fluentd with the same input and one file output taking every
/// tag, fed the same records.
fn ceiling_config(dir: &Path, ports: Ports) -> Result<PathBuf> {
    let rev = dir.join("rev");
    std::fs::create_dir_all(&rev)?;
    std::fs::create_dir_all(dir.join("out"))?;
    std::fs::write(
        rev.join(sluice::layout::AGGREGATOR_REGEXP_TIMEOUT_FILE),
        sluice::render::fluentd::regexp_timeout_script(),
    )?;
    let main = rev.join(sluice::layout::AGGREGATOR_CONFIG_FILE);
    std::fs::write(
        &main,
        format!(
            "<system>\n  workers 1\n  rpc_endpoint 127.0.0.1:{rpc}\n</system>\n<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n  <security>\n    self_hostname ceiling\n    shared_key {SHARED_KEY}\n  </security>\n</source>\n<match **>\n  @type file\n  path \"{out}/all\"\n  append true\n  <buffer time>\n    @type memory\n    timekey 1h\n    flush_mode interval\n    flush_interval 1s\n    chunk_limit_size 8m\n    total_limit_size 1g\n    overflow_action block\n  </buffer>\n</match>\n",
            rpc = ports.rpc,
            port = ports.forward,
            out = dir.join("out").display()
        ),
    )?;
    Ok(main)
}

fn routes_of(pipeline: &sluice::model::Pipeline) -> Vec<String> {
    pipeline
        .flows
        .iter()
        .map(|flow| {
            sluice::render::edge::flow_route(&sluice::render::fluentd::flow_label(&flow.key))
                .to_owned()
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ports = Ports {
        forward: args.port_base,
        metrics: args.port_base + 1,
        rpc: args.port_base + 2,
    };
    for port in [ports.forward, ports.metrics, ports.rpc] {
        if listening(port) {
            bail!("port {port} is in use; choose another --port-base");
        }
    }
    println!(
        "| flows | shape | instances | estimated check | estimated fluentd peak | dry-run | dry-run peak RSS | start | RSS (supervisor + worker) | threads | idle CPU | reload (worker restart) | RSS after reload | records per fluentd CPU-s | ceiling | ratio | delivered |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.flows {
        let objects = objects(n, args.shape)?;
        let resolution = sluice::model::resolve(&objects.inventory());
        let pipeline = resolution
            .pipelines
            .first()
            .context("the generated Logging resolves")?;
        if pipeline.flows.len() != n {
            bail!(
                "{} of {n} flows resolved: {:?}",
                pipeline.flows.len(),
                resolution.problems.values().next()
            );
        }
        let files = sluice::render::aggregator(pipeline);
        let instances = sluice::model::instances::OutputInstances::of(pipeline)
            .instances
            .len();
        // The capacity model's estimates as computed, before the status rounds them up.
        let estimate = &pipeline.capacity;
        let dir = args
            .work
            .join(format!("{:?}-{n}", args.shape).to_lowercase());
        let _ = std::fs::remove_dir_all(&dir);
        let check_dir = dir.join("check");
        let main = write_bundle(&files, &check_dir, ports, None)?;
        let (wall, peak, ok, output) = run_measured(fluentd_command(&args.fluentd, &main, true))?;
        if !ok {
            bail!("the check rejected the {n}-flow configuration:\n{output}");
        }
        let mut row = format!(
            "| {n} | {:?} | {instances} | {} MiB / {:.1} s | {} MiB | {:.1} s | {} MiB |",
            args.shape,
            estimate.check.bytes.div_ceil(1024 * 1024),
            estimate.check.micros as f64 / 1e6,
            estimate.aggregator_bytes.div_ceil(1024 * 1024),
            wall.as_secs_f64(),
            peak / 1024 / 1024
        );
        if args.check_only {
            println!("{row}");
            continue;
        }
        let run_dir = dir.join("run");
        let out = run_dir.join("out");
        let main = write_bundle(&files, &run_dir, ports, Some(&out))?;
        let (running, startup) = start(&args.fluentd, &main, &run_dir, ports.forward)?;
        std::thread::sleep(Duration::from_secs(5));
        let leader = running.child.id();
        let (rss, threads) = memory(leader);
        let pids = session_processes(leader);
        let before = cpu_seconds(&pids);
        let idle_started = Instant::now();
        std::thread::sleep(Duration::from_secs(args.idle));
        let idle_rate = (cpu_seconds(&pids) - before) / idle_started.elapsed().as_secs_f64();
        let _ = write!(
            row,
            " {:.1} s | {} MiB | {threads} | {idle_rate:.3} |",
            startup.as_secs_f64(),
            rss.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
        );
        // A worker restart, as the reloader triggers it (docs/architecture.md, "Why
        // fluentd's workers restart"). The supervisor keeps the forward port open meanwhile,
        // so the reload is over only when the new worker says it runs.
        let reload_path = sluice::layout::AGGREGATOR_RELOAD_PATH;
        let workers_before = session_processes(leader);
        let started_workers = count_in_log(&running.log, WORKER_RUNNING);
        let reload_started = Instant::now();
        http_get(ports.rpc, reload_path)?;
        while count_in_log(&running.log, WORKER_RUNNING) <= started_workers {
            if reload_started.elapsed() > Duration::from_secs(1800) {
                bail!("no new worker within 30 minutes of {reload_path}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let reload = reload_started.elapsed();
        if session_processes(leader)
            .iter()
            .any(|pid| *pid != leader && workers_before.contains(pid))
        {
            bail!("{reload_path} left the old worker running");
        }
        std::thread::sleep(Duration::from_secs(3));
        let (rss_after, _) = memory(leader);
        let _ = write!(
            row,
            " {:.1} s | {} MiB |",
            reload.as_secs_f64(),
            rss_after
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" + ")
        );
        let Some(fluent_bit) = &args.fluent_bit else {
            println!("{row}");
            continue;
        };
        let routes = routes_of(pipeline);
        let feeder = Feeder {
            fluent_bit,
            records: args.records,
            ports,
        };
        let fed = feeder.run(&run_dir, &running, &routes, idle_rate)?;
        drop(running);
        // Exact delivery: every flow its records, once.
        let per_route = args.records.div_ceil(routes.len().max(1));
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        let mut left = args.records;
        for route in &routes {
            let take = per_route.min(left);
            if take > 0 {
                expected.insert(sluice::render::edge::route_tag(route), take);
            }
            left -= take;
        }
        let exact = fed.per_tag == expected && fed.duplicates == 0;
        // The ceiling, on the same records.
        let ceiling_dir = dir.join("ceiling");
        let ceiling_main = ceiling_config(&ceiling_dir, ports)?;
        let (ceiling_running, _) =
            start(&args.fluentd, &ceiling_main, &ceiling_dir, ports.forward)?;
        std::thread::sleep(Duration::from_secs(3));
        let ceiling_pids = session_processes(ceiling_running.child.id());
        let before = cpu_seconds(&ceiling_pids);
        std::thread::sleep(Duration::from_secs(5));
        let ceiling_idle = (cpu_seconds(&ceiling_pids) - before) / 5.0;
        let ceiling = feeder.run(&ceiling_dir, &ceiling_running, &routes, ceiling_idle)?;
        drop(ceiling_running);
        let rate = fed.total as f64 / fed.cpu;
        let ceiling_rate = ceiling.total as f64 / ceiling.cpu;
        let _ = write!(
            row,
            " {rate:.0} | {ceiling_rate:.0} | {:.2} | {} of {}{} |",
            rate / ceiling_rate,
            fed.total,
            args.records,
            if exact {
                ", exact per flow".to_owned()
            } else {
                format!(", NOT exact ({} duplicates)", fed.duplicates)
            }
        );
        println!("{row}");
    }
    Ok(())
}
