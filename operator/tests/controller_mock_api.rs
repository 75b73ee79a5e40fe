//! The controller against a mock API server (tower-test): every request a reconcile makes
//! is recorded and compared exactly (method, path, query, body). The pure steps (resolve,
//! TLS plan, build) are injected with canned results so these tests cover only the I/O.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use sluice::api::{
    CertificateInfo, CertificatesStatus, ClusterFlow, ClusterOutput, Flow, Logging, Output,
};
use sluice::build::{Child, ChildKind};
use sluice::controller::apply::api_resource;
use sluice::controller::context::{Cores, Stores};
use sluice::controller::metrics::Metrics;
use sluice::controller::{Context, ControlNamespaces, Settings, reconcile};
use sluice::layout::Names;
use sluice::model::{FlowPlan, Kind, ObjectKey, OutputPlan, Pipeline, Problem, Resolution};
use sluice::pki::PkiPlan;
use sluice::routing::{FlowMatcher, Scope, Watched};

const CONTROL: &str = "sluice-system";
const APPLY_QUERY: &str = "fieldManager=sluice.dev%2Foperator&force=true";

/// One request as the API server saw it.
#[derive(Clone, Debug, PartialEq)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is_write(&self) -> bool {
        self.method != "GET"
    }
    fn line(&self) -> String {
        format!("{} {}?{}", self.method, self.path, self.query)
    }
}

/// Query parameters sorted, so the comparison does not depend on kube's parameter order.
fn sorted_query(query: &str) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort();
    pairs.join("&")
}

/// A scripted status code that means: never answer (the request times out).
const NO_ANSWER: u16 = 0;

/// Responses to give instead of the default, once each: (method, path, code, body).
type Scripted = Arc<Mutex<VecDeque<(String, String, u16, Value)>>>;

/// Called with every request as it arrives, before it is answered.
type Hook = Arc<Mutex<Option<Box<dyn FnMut(&Call) + Send>>>>;

struct Writers {
    loggings: Writer<DeserializeGuard<Logging>>,
    flows: Writer<DeserializeGuard<Flow>>,
    outputs: Writer<DeserializeGuard<Output>>,
    cluster_flows: Writer<DeserializeGuard<ClusterFlow>>,
    cluster_outputs: Writer<DeserializeGuard<ClusterOutput>>,
    namespaces: Writer<PartialObjectMeta<Namespace>>,
    children: BTreeMap<ChildKind, Writer<DynamicObject>>,
}

/// A resourceVersion not used before, as the API server gives every write.
fn next_resource_version() -> String {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
    (LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1).to_string()
}

/// Sets the status of a cached Sluice object, as the watch would after a status write.
fn restatus<K>(
    store: &kube::runtime::reflector::Store<DeserializeGuard<K>>,
    writer: &mut Writer<DeserializeGuard<K>>,
    namespace: Option<&str>,
    name: &str,
    status: Value,
) where
    K: kube::Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned,
{
    let current = store
        .state()
        .into_iter()
        .find(|o| o.name_any() == name && o.namespace().as_deref() == namespace)
        .unwrap_or_else(|| panic!("no cached {name}"));
    let mut value = serde_json::to_value(current.0.as_ref().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_default();
    value["status"] = status;
    value["metadata"]["resourceVersion"] = json!(next_resource_version());
    writer.apply_watcher_event(&watcher::Event::Apply(guard(value)));
}

/// Canned results of the pure steps, changeable between reconciles.
#[derive(Clone)]
struct Canned {
    resolution: Arc<Mutex<Resolution>>,
    plan: Arc<Mutex<PkiPlan>>,
    children: Arc<Mutex<Vec<Child>>>,
    /// Names of the Secrets the TLS planner was told exist, per call.
    existing: Arc<Mutex<Vec<Vec<String>>>>,
}

/// What the caches and the API server hold at the start.
#[derive(Default)]
struct Fixture {
    loggings: Vec<Value>,
    flows: Vec<Value>,
    outputs: Vec<Value>,
    cluster_flows: Vec<Value>,
    cluster_outputs: Vec<Value>,
    namespaces: Vec<Value>,
    /// Objects the API server returns for a GET of this path.
    served: BTreeMap<String, Value>,
    control_namespaces: Vec<String>,
    /// Run the real resolve, PKI plan and build instead of canned results.
    real_cores: bool,
    settings: Settings,
}

struct Harness {
    ctx: Arc<Context>,
    writers: Writers,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Responses to give instead of the default, once each, for (method, path).
    failures: Scripted,
    hook: Hook,
    canned: Canned,
    now: jiff::Timestamp,
    /// Seconds added to `now` by the injected clock.
    elapsed: Arc<std::sync::atomic::AtomicI64>,
    /// What the reloaders behind each host answer; none by default (no pods yet).
    reloaders: Reloaders,
    /// What a drain request to each pod's reloader answers, and the hosts asked.
    drains: Drains,
}

type Drains = Arc<
    Mutex<(
        BTreeMap<String, sluice::bundle::ReloaderStatus>,
        Vec<String>,
    )>,
>;

fn scripted_drain(drains: Drains) -> Arc<sluice::controller::rollout::DrainFn> {
    Arc::new(move |host: String| {
        let mut drains = drains.lock().unwrap_or_else(|e| e.into_inner());
        drains.1.push(host.clone());
        let answer = drains
            .0
            .get(&host)
            .cloned()
            .ok_or_else(|| format!("{host}: no such pod"));
        Box::pin(async move { answer })
    })
}

type Reloaders = Arc<Mutex<BTreeMap<String, Vec<sluice::bundle::ReloaderStatus>>>>;

fn scripted_probe(reloaders: Reloaders) -> Arc<sluice::controller::rollout::ProbeFn> {
    Arc::new(move |host: String, limit: usize| {
        let answer: Vec<Result<sluice::bundle::ReloaderStatus, String>> = reloaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .take(limit)
            .map(Ok)
            .collect();
        Box::pin(async move { answer })
    })
}

fn guard<K: kube::Resource + serde::de::DeserializeOwned>(value: Value) -> DeserializeGuard<K> {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("fixture: {e}"))
}

fn logging_json(status: Option<Value>) -> Value {
    let mut logging = json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": "Logging",
        "metadata": {"name": "main", "uid": "uid-main", "generation": 1, "resourceVersion": "10"},
        "spec": {"controlNamespace": CONTROL}
    });
    if let Some(status) = status {
        logging["status"] = status;
    }
    logging
}

fn flow_json(name: &str, generation: i64, status: Option<Value>) -> Value {
    let mut flow = json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": "Flow",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
                     "generation": generation, "resourceVersion": "20"},
        "spec": {"localOutputRefs": ["store"]}
    });
    if let Some(status) = status {
        flow["status"] = status;
    }
    flow
}

fn output_json() -> Value {
    json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": "Output",
        "metadata": {"name": "store", "namespace": "team-a", "uid": "uid-store",
                     "generation": 1, "resourceVersion": "30"},
        "spec": {"stdout": {}}
    })
}

fn names() -> Names {
    Names::new("main", CONTROL)
}

fn child(kind: ChildKind, api_version: &str, type_: &str, name: &str, body: Value) -> Child {
    let mut object = json!({
        "apiVersion": api_version,
        "kind": type_,
        "metadata": {
            "name": name,
            "namespace": CONTROL,
            "labels": names().labels("test"),
            "ownerReferences": [{
                "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging", "name": "main",
                "uid": "uid-main", "controller": true, "blockOwnerDeletion": true
            }]
        }
    });
    if let (Some(target), Some(extra)) = (object.as_object_mut(), body.as_object()) {
        for (k, v) in extra {
            target.insert(k.clone(), v.clone());
        }
    }
    Child {
        kind,
        object: serde_json::from_value(object).unwrap_or_else(|e| panic!("fixture: {e}")),
    }
}

fn config_secret(config: &str) -> Child {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(config);
    child(
        ChildKind::Secret,
        "v1",
        "Secret",
        &names().agent_config_secret(),
        json!({"data": {"fluent-bit.yaml": encoded}}),
    )
}

fn workload(kind: ChildKind, type_: &str, name: &str) -> Child {
    child(
        kind,
        "apps/v1",
        type_,
        name,
        json!({"spec": {"selector": {"matchLabels": names().selector_labels("x")},
                        "template": {"metadata": {"labels": names().selector_labels("x")},
                                     "spec": {"containers": [{"name": "main", "image": "img:1"}]}}}}),
    )
}

fn default_children() -> Vec<Child> {
    vec![
        config_secret("pipeline: {}\n"),
        workload(ChildKind::DaemonSet, "DaemonSet", &names().agent()),
        workload(ChildKind::StatefulSet, "StatefulSet", &names().aggregator()),
    ]
}

/// The canned pipeline of `main`: Flow team-a/app sending to Output team-a/store, so both
/// are rendered (Ready); any other Flow is not.
fn pipeline(logging: &Logging) -> Pipeline {
    let store = ObjectKey::namespaced(Kind::Output, "team-a", "store");
    Pipeline {
        logging: "main".to_owned(),
        logging_uid: logging.uid(),
        spec: logging.spec.clone(),
        names: names(),
        watched: Watched::All,
        flows: vec![FlowPlan::new(
            ObjectKey::namespaced(Kind::Flow, "team-a", "app"),
            FlowMatcher {
                scope: Scope::Namespace("team-a".to_owned()),
                rules: Vec::new(),
            },
            Vec::new(),
            vec![store.clone()],
        )],
        default_flow: None,
        error_output: None,
        outputs: BTreeMap::from([(
            store.clone(),
            OutputPlan {
                key: store,
                spec: serde_json::from_value(json!({"stdout": {}}))
                    .unwrap_or_else(|e| panic!("{e}")),
                secret_files: BTreeMap::new(),
            },
        )]),
        output_secret_data: BTreeMap::new(),
        problems: BTreeMap::new(),
        buffers: Default::default(),
        capacity: Default::default(),
    }
}

fn plan(now: jiff::Timestamp, next_change: Option<jiff::Timestamp>) -> PkiPlan {
    let info = |serial: &str| CertificateInfo {
        serial: serial.to_owned(),
        not_after: (now + jiff::SignedDuration::from_hours(24 * 90)).to_string(),
    };
    PkiPlan {
        certificates: CertificatesStatus {
            ca: Some(info("01")),
            server: Some(info("02")),
            client: Some(info("03")),
            rotation_phase: Some("Stable".to_owned()),
            next_rotation: next_change.map(|t| t.to_string()),
        },
        next_change,
        material_hash: "hash".to_owned(),
        ..PkiPlan::default()
    }
}

fn default_response(method: &str, path: &str, body: &Value) -> (u16, Value) {
    match method {
        "GET" => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found"}),
        ),
        "DELETE" => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ => {
            let mut echo = body.clone();
            if echo.get("metadata").is_none() {
                let segments: Vec<&str> = path.split('/').collect();
                let name = segments
                    .iter()
                    .rev()
                    .find(|s| **s != "status")
                    .copied()
                    .unwrap_or("x");
                echo["metadata"] = json!({"name": name});
            }
            echo["metadata"]["resourceVersion"] = json!("100");
            (200, echo)
        }
    }
}

impl Harness {
    /// Answers the next `method` request to `path` with this status and body instead of the
    /// default response.
    fn respond_once(&self, method: &str, path: &str, code: u16, body: Value) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((method.to_owned(), path.to_owned(), code, body));
    }

    fn new(logging: Value, flows: Vec<Value>) -> Self {
        Self::start(Fixture {
            loggings: vec![logging],
            flows,
            outputs: vec![output_json()],
            namespaces: vec![json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"team": "a"}}
            })],
            control_namespaces: vec![CONTROL.to_owned()],
            ..Fixture::default()
        })
    }

    fn start(fixture: Fixture) -> Self {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let failures: Scripted = Arc::default();
        let hook: Hook = Arc::default();
        {
            let calls = calls.clone();
            let failures = failures.clone();
            let hook = hook.clone();
            let served = fixture.served.clone();
            tokio::spawn(async move {
                // Requests scripted to get no answer, kept open until the test ends.
                let mut unanswered = Vec::new();
                while let Some((request, send)) = handle.next_request().await {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let method = parts.method.to_string();
                    let path = parts.uri.path().to_owned();
                    let query = sorted_query(parts.uri.query().unwrap_or(""));
                    let scripted = {
                        let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                        let position = failures
                            .iter()
                            .position(|(m, p, _, _)| *m == method && *p == path);
                        position.and_then(|i| failures.remove(i))
                    };
                    let (code, response) = match (scripted, served.get(&path)) {
                        (Some((_, _, code, response)), _) => (code, response),
                        (None, Some(object)) if method == "GET" => (200, object.clone()),
                        (None, _) => default_response(&method, &path, &body),
                    };
                    let call = Call {
                        method,
                        path,
                        query,
                        body,
                    };
                    if let Some(hook) = hook.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                        hook(&call);
                    }
                    calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
                    if code == NO_ANSWER {
                        unanswered.push(send);
                        continue;
                    }
                    let response = Response::builder()
                        .status(code)
                        .body(Body::from(
                            serde_json::to_vec(&response).unwrap_or_default(),
                        ))
                        .unwrap_or_else(|e| panic!("{e}"));
                    send.send_response(response);
                }
            });
        }

        let (loggings_store, mut loggings) = kube::runtime::reflector::store();
        let (flows_store, mut flows_writer) = kube::runtime::reflector::store();
        let (outputs_store, mut outputs) = kube::runtime::reflector::store();
        let (cluster_flows_store, cf) =
            kube::runtime::reflector::store::<DeserializeGuard<ClusterFlow>>();
        let (cluster_outputs_store, co) =
            kube::runtime::reflector::store::<DeserializeGuard<ClusterOutput>>();
        let (namespaces_store, mut namespaces) =
            kube::runtime::reflector::store::<PartialObjectMeta<Namespace>>();
        let mut children = BTreeMap::new();
        let mut children_stores = BTreeMap::new();
        for kind in ChildKind::ALL {
            if kind == ChildKind::Namespace {
                continue;
            }
            let writer = Writer::new(api_resource(kind).0);
            children_stores.insert(kind, vec![writer.as_reader()]);
            children.insert(kind, writer);
        }
        let logging_guard: DeserializeGuard<Logging> = guard(fixture.loggings[0].clone());
        let logging = logging_guard.0.clone().unwrap_or_else(|e| panic!("{e}"));
        for value in fixture.loggings {
            loggings.apply_watcher_event(&watcher::Event::Apply(guard(value)));
        }
        for flow in fixture.flows {
            flows_writer.apply_watcher_event(&watcher::Event::Apply(guard(flow)));
        }
        for output in fixture.outputs {
            outputs.apply_watcher_event(&watcher::Event::Apply(guard(output)));
        }
        let mut cf = cf;
        for value in fixture.cluster_flows {
            cf.apply_watcher_event(&watcher::Event::Apply(guard(value)));
        }
        let mut co = co;
        for value in fixture.cluster_outputs {
            co.apply_watcher_event(&watcher::Event::Apply(guard(value)));
        }
        for namespace in fixture.namespaces {
            namespaces.apply_watcher_event(&watcher::Event::Apply(
                serde_json::from_value(namespace).unwrap_or_else(|e| panic!("{e}")),
            ));
        }
        // Keep the writers of kinds the tests never change alive for the stores' sake.

        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let canned = Canned {
            resolution: Arc::new(Mutex::new(Resolution {
                pipelines: vec![pipeline(&logging)],
                problems: BTreeMap::new(),
            })),
            plan: Arc::new(Mutex::new(plan(now, None))),
            children: Arc::new(Mutex::new(default_children())),
            existing: Arc::default(),
        };
        let cores = if fixture.real_cores {
            Cores::default()
        } else {
            let canned = canned.clone();
            let (r, p, c, e) = (
                canned.resolution,
                canned.plan,
                canned.children,
                canned.existing,
            );
            Cores {
                resolve: Arc::new(move |_| r.lock().unwrap_or_else(|e| e.into_inner()).clone()),
                plan: Arc::new(move |request| {
                    e.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(request.existing.keys().cloned().collect());
                    Ok(p.lock().unwrap_or_else(|e| e.into_inner()).clone())
                }),
                build: Arc::new(move |_, _| {
                    Ok(c.lock().unwrap_or_else(|e| e.into_inner()).clone())
                }),
            }
        };
        let stores = Stores {
            loggings: loggings_store,
            flows: flows_store,
            cluster_flows: cluster_flows_store,
            outputs: outputs_store,
            cluster_outputs: cluster_outputs_store,
            namespaces: namespaces_store,
            children: children_stores,
            control_namespaces: ControlNamespaces::Only(fixture.control_namespaces),
        };
        let elapsed: Arc<std::sync::atomic::AtomicI64> = Arc::default();
        let clock = {
            let elapsed = elapsed.clone();
            move || {
                now + jiff::SignedDuration::from_secs(
                    elapsed.load(std::sync::atomic::Ordering::Relaxed),
                )
            }
        };
        let ctx = Context::new(
            client,
            stores,
            Arc::new(Metrics::new()),
            Arc::new(clock),
            fixture.settings,
            Reporter {
                controller: "sluice".to_owned(),
                instance: Some("test".to_owned()),
            },
        )
        .with_cores(cores);
        let reloaders: Reloaders = Arc::default();
        let drains: Drains = Arc::default();
        let ctx = ctx
            .with_probe(scripted_probe(reloaders.clone()))
            .with_drain(scripted_drain(drains.clone()));
        Self {
            ctx: Arc::new(ctx),
            writers: Writers {
                loggings,
                flows: flows_writer,
                cluster_flows: cf,
                cluster_outputs: co,
                namespaces,
                outputs,
                children,
            },
            calls,
            failures,
            hook,
            canned,
            now,
            elapsed,
            reloaders,
            drains,
        }
    }

    /// A new operator process: same caches and API server, empty memory.
    fn restart(&mut self) {
        let old = &self.ctx;
        let ctx = Context::new(
            old.client.clone(),
            old.stores.clone(),
            Arc::new(Metrics::new()),
            old.clock.clone(),
            Settings::default(),
            Reporter {
                controller: "sluice".to_owned(),
                instance: Some("test-2".to_owned()),
            },
        )
        .with_cores(old.cores.clone())
        .with_probe(scripted_probe(self.reloaders.clone()))
        .with_drain(scripted_drain(self.drains.clone()));
        self.ctx = Arc::new(ctx);
    }

    /// A new generation of a cached Flow, as its watch delivers it: the stored status stays.
    fn edit_flow(&mut self, name: &str, generation: i64) {
        let current = self
            .ctx
            .stores
            .flows
            .state()
            .into_iter()
            .find(|f| f.name_any() == name)
            .unwrap_or_else(|| panic!("no Flow {name}"));
        let status = serde_json::to_value(
            current
                .0
                .as_ref()
                .unwrap_or_else(|e| panic!("{e}"))
                .status
                .clone(),
        )
        .unwrap_or_default();
        let mut flow = flow_json(name, generation, Some(status));
        flow["metadata"]["resourceVersion"] = json!(next_resource_version());
        self.writers
            .flows
            .apply_watcher_event(&watcher::Event::Apply(guard(flow)));
    }

    fn advance(&self, seconds: i64) {
        self.elapsed
            .fetch_add(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// The Logging named `main`, else the only one (the store's order is not stable).
    fn logging(&self) -> Arc<DeserializeGuard<Logging>> {
        let loggings = self.ctx.stores.loggings.state();
        loggings
            .iter()
            .find(|l| l.name_any() == "main")
            .or(loggings.first())
            .cloned()
            .unwrap_or_else(|| panic!("no Logging"))
    }

    /// One reconcile and the object status writes it queued.
    async fn reconcile(&self) -> Vec<Call> {
        self.reconcile_logging(self.logging()).await
    }

    /// Reconciles the cached Logging named `name`.
    async fn reconcile_named(&self, name: &str) -> Vec<Call> {
        let logging = self
            .ctx
            .stores
            .loggings
            .state()
            .into_iter()
            .find(|l| l.name_any() == name)
            .unwrap_or_else(|| panic!("no Logging {name}"));
        self.reconcile_logging(logging).await
    }

    async fn reconcile_logging(&self, logging: Arc<DeserializeGuard<Logging>>) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let action = reconcile::reconcile(logging, self.ctx.clone()).await;
        if let Err(error) = action {
            panic!("reconcile failed: {error}");
        }
        self.ctx.status_writer.until_idle().await;
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Feeds what the API server now holds back into the caches, as the watches would:
    /// applied children (workloads with a ready status) and written statuses.
    fn observe(&mut self, calls: &[Call]) {
        for call in calls.iter().filter(|c| c.method == "PATCH") {
            if call.path.ends_with("/status") {
                self.observe_status(call);
                continue;
            }
            if call.path.contains("/events") {
                continue;
            }
            let mut object = call.body.clone();
            object["metadata"]["resourceVersion"] = json!("100");
            object["metadata"]["uid"] = json!(format!("uid-{}", call.path));
            object["metadata"]["generation"] = json!(1);
            if object["kind"] == "Namespace" {
                self.writers
                    .namespaces
                    .apply_watcher_event(&watcher::Event::Apply(
                        serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}")),
                    ));
                continue;
            }
            if object["kind"] == "DaemonSet" {
                object["status"] = json!({"observedGeneration": 1, "desiredNumberScheduled": 2,
                    "updatedNumberScheduled": 2, "numberAvailable": 2});
            }
            if object["kind"] == "StatefulSet" {
                object["status"] = json!({"observedGeneration": 1, "replicas": 1,
                    "readyReplicas": 1, "updatedReplicas": 1,
                    "currentRevision": "r1", "updateRevision": "r1"});
            }
            let kind = ChildKind::ALL
                .into_iter()
                .find(|k| object["kind"] == api_resource(*k).0.kind)
                .unwrap_or_else(|| panic!("unexpected kind {}", object["kind"]));
            let object: DynamicObject =
                serde_json::from_value(object).unwrap_or_else(|e| panic!("{e}"));
            if let Some(writer) = self.writers.children.get_mut(&kind) {
                writer.apply_watcher_event(&watcher::Event::Apply(object));
            }
        }
    }

    fn observe_status(&mut self, call: &Call) {
        let status = call.body["status"].clone();
        // /apis/logging.sluice.dev/v1alpha1/[namespaces/NS/]PLURAL/NAME/status
        let segments: Vec<&str> = call.path.split('/').collect();
        let name = segments[segments.len() - 2];
        let plural = segments[segments.len() - 3];
        let namespace = (segments.get(4) == Some(&"namespaces")).then(|| segments[5]);
        let stores = &self.ctx.stores;
        let writers = &mut self.writers;
        match plural {
            "loggings" => restatus(&stores.loggings, &mut writers.loggings, None, name, status),
            "flows" => restatus(&stores.flows, &mut writers.flows, namespace, name, status),
            "outputs" => restatus(
                &stores.outputs,
                &mut writers.outputs,
                namespace,
                name,
                status,
            ),
            "clusterflows" => restatus(
                &stores.cluster_flows,
                &mut writers.cluster_flows,
                None,
                name,
                status,
            ),
            "clusteroutputs" => restatus(
                &stores.cluster_outputs,
                &mut writers.cluster_outputs,
                None,
                name,
                status,
            ),
            other => panic!("status of unexpected kind {other}"),
        }
    }

    /// Reconciles and feeds the results back until a reconcile writes nothing.
    /// What the reloaders of `component` answer from now on.
    fn reloaders_answer(&self, component: &str, statuses: Vec<sluice::bundle::ReloaderStatus>) {
        self.reloaders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(names().reloader_host(component), statuses);
    }

    /// A Flow as its watch delivers an edit of it, then the reconcile that edit triggers.
    async fn deliver_flow_edit(&mut self, flow: Value) -> Vec<Call> {
        self.writers
            .flows
            .apply_watcher_event(&watcher::Event::Apply(guard(flow)));
        self.ctx.trigger.bump();
        self.reconcile().await
    }

    /// Delivers `flow` and reconciles; `arriving` reaches the caches, and signals its change
    /// as the watch does, while that reconcile applies the aggregator's configuration (after
    /// its snapshot, before its bookkeeping).
    async fn deliver_flow_edit_while_applying(
        &mut self,
        flow: Value,
        arriving: Value,
    ) -> Vec<Call> {
        self.writers
            .flows
            .apply_watcher_event(&watcher::Event::Apply(guard(flow)));
        let writer = Arc::new(Mutex::new(Some(std::mem::take(&mut self.writers.flows))));
        let aggregator_config = format!(
            "/api/v1/namespaces/{CONTROL}/secrets/{}",
            names().aggregator_config_secret()
        );
        {
            let writer = writer.clone();
            let trigger = self.ctx.trigger.clone();
            let mut arriving = Some(arriving);
            *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move |call| {
                if call.method == "PATCH"
                    && call.path == aggregator_config
                    && let Some(flow) = arriving.take()
                    && let Some(writer) = writer.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                {
                    writer.apply_watcher_event(&watcher::Event::Apply(guard(flow)));
                    trigger.bump();
                }
            }));
        }
        self.ctx.trigger.bump();
        let calls = self.reconcile().await;
        *self.hook.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.writers.flows = writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| panic!("the hook keeps the writer"));
        find(
            &calls,
            "PATCH",
            &format!(
                "/api/v1/namespaces/{CONTROL}/secrets/{}",
                names().aggregator_config_secret()
            ),
        );
        calls
    }

    /// Removes `flow` from the caches, as its deletion's watch event would, and reconciles.
    async fn deliver_flow_deletion(&mut self, flow: Value) -> Vec<Call> {
        self.writers
            .flows
            .apply_watcher_event(&watcher::Event::Delete(guard(flow)));
        self.ctx.trigger.bump();
        self.reconcile().await
    }

    async fn settle(&mut self) {
        for _ in 0..4 {
            let calls = self.reconcile().await;
            if calls.iter().all(|c| !c.is_write()) {
                return;
            }
            self.observe(&calls);
        }
        panic!("did not settle");
    }
}

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

fn find<'a>(calls: &'a [Call], method: &str, path: &str) -> &'a Call {
    calls
        .iter()
        .find(|c| c.method == method && c.path == path)
        .unwrap_or_else(|| panic!("no {method} {path} in {:#?}", lines(calls)))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

const SECRET_PATH: &str = "/api/v1/namespaces/sluice-system/secrets/main-agent-config";
const DS_PATH: &str = "/apis/apps/v1/namespaces/sluice-system/daemonsets/main-agent";
const STS_PATH: &str = "/apis/apps/v1/namespaces/sluice-system/statefulsets/main-aggregator";
const LOGGING_STATUS: &str = "/apis/logging.sluice.dev/v1alpha1/loggings/main/status";
const FLOW_STATUS: &str = "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/app/status";
const OUTPUT_STATUS: &str =
    "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/outputs/store/status";

#[tokio::test]
async fn create_applies_every_child_in_order_then_writes_status() {
    let harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![
            format!("PATCH {SECRET_PATH}?{APPLY_QUERY}"),
            format!("PATCH {DS_PATH}?{APPLY_QUERY}"),
            format!("PATCH {STS_PATH}?{APPLY_QUERY}"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events?".to_owned(),
            format!("PATCH {LOGGING_STATUS}?{APPLY_QUERY}"),
            format!("PATCH {FLOW_STATUS}?{APPLY_QUERY}"),
            format!("PATCH {OUTPUT_STATUS}?{APPLY_QUERY}"),
        ]
    );
    // The apply body is the built object, unchanged.
    let built = serde_json::to_value(&default_children()[0].object).unwrap_or_default();
    assert_eq!(find(&calls, "PATCH", SECRET_PATH).body, built);

    let event = &find(
        &calls,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    )
    .body;
    assert_eq!(event["reason"], "Created");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "Logging");
    assert_eq!(event["regarding"]["name"], "main");

    let status = &find(&calls, "PATCH", LOGGING_STATUS).body;
    assert_eq!(status["apiVersion"], "logging.sluice.dev/v1alpha1");
    assert_eq!(status["kind"], "Logging");
    let status = &status["status"];
    assert_eq!(status["observedGeneration"], 1);
    // The workloads were just created: nothing is ready yet.
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(condition(status, "AgentReady")["reason"], "NotCreated");
    assert_eq!(condition(status, "CertificatesReady")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
    assert_eq!(
        condition(status, "Ready")["lastTransitionTime"],
        "2027-01-15T08:00:00Z"
    );
    assert_eq!(status["certificates"]["ca"]["serial"], "01");

    let flow = &find(&calls, "PATCH", FLOW_STATUS).body["status"];
    assert_eq!(condition(flow, "Ready")["status"], "True");
    assert_eq!(condition(flow, "Degraded")["status"], "False");
}

#[tokio::test]
async fn nothing_changed_means_no_requests() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    let first = harness.reconcile().await;
    harness.observe(&first);
    // The workloads became ready: only the Logging's status changes.
    let second = harness.reconcile().await;
    assert_eq!(
        lines(&second),
        vec![format!("PATCH {LOGGING_STATUS}?{APPLY_QUERY}")]
    );
    let status = &second[0].body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "AgentReady")["status"], "True");
    assert_eq!(condition(status, "AggregatorReady")["status"], "True");
    // Unchanged conditions keep their transition time; only flipped ones move.
    harness.observe(&second);
    let third = harness.reconcile().await;
    assert_eq!(lines(&third), Vec::<String>::new());

    // Objects from a (re)list carry no apiVersion/kind; they still count as up to date.
    let relisted: Vec<(ChildKind, DynamicObject)> = ChildKind::ALL
        .iter()
        .filter(|k| **k != ChildKind::Namespace)
        .flat_map(|kind| {
            harness
                .ctx
                .stores
                .children_of(*kind)
                .into_iter()
                .map(move |o| {
                    let mut o = (*o).clone();
                    o.types = None;
                    (*kind, o)
                })
        })
        .collect();
    assert!(!relisted.is_empty());
    for (kind, object) in relisted {
        if let Some(writer) = harness.writers.children.get_mut(&kind) {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
    }
    let fourth = harness.reconcile().await;
    assert_eq!(lines(&fourth), Vec::<String>::new());
}

#[tokio::test]
async fn a_changed_child_is_the_only_thing_applied() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let changed = config_secret("pipeline: {changed: true}\n");
    harness
        .canned
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())[0] = changed.clone();
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![format!("PATCH {SECRET_PATH}?{APPLY_QUERY}")]
    );
    assert_eq!(
        calls[0].body,
        serde_json::to_value(&changed.object).unwrap_or_default()
    );
}

#[tokio::test]
async fn drift_made_by_someone_else_is_reverted() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let mut edited: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "main-agent-config", "namespace": CONTROL,
                     "labels": names().labels("test"), "resourceVersion": "200"},
        "data": {"fluent-bit.yaml": "ZWRpdGVk"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    edited.metadata.uid = Some("uid-secret".to_owned());
    if let Some(writer) = harness.writers.children.get_mut(&ChildKind::Secret) {
        writer.apply_watcher_event(&watcher::Event::Apply(edited));
    }
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![format!("PATCH {SECRET_PATH}?{APPLY_QUERY}")]
    );
}

#[tokio::test]
async fn an_invalid_flow_is_degraded_and_announced_while_the_rest_flows() {
    let mut harness = Harness::new(
        logging_json(None),
        vec![flow_json("app", 1, None), flow_json("broken", 1, None)],
    );
    let problem = Problem {
        reason: "OutputNotFound",
        field: "spec.localOutputRefs[0]".to_owned(),
        message: "Output team-a/missing does not exist".to_owned(),
    };
    harness
        .canned
        .resolution
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .problems
        .insert(
            ObjectKey::namespaced(Kind::Flow, "team-a", "broken"),
            vec![problem],
        );
    let calls = harness.reconcile().await;
    // The pipeline is still applied.
    find(&calls, "PATCH", DS_PATH);
    find(&calls, "PATCH", STS_PATH);

    let event = calls
        .iter()
        .find(|c| c.path == "/apis/events.k8s.io/v1/namespaces/team-a/events")
        .unwrap_or_else(|| panic!("no event in {:#?}", lines(&calls)));
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "OutputNotFound");
    assert_eq!(event.body["regarding"]["kind"], "Flow");
    assert_eq!(event.body["regarding"]["name"], "broken");
    assert_eq!(
        event.body["note"],
        "spec.localOutputRefs[0]: Output team-a/missing does not exist"
    );

    let broken = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/broken/status",
    )
    .body["status"];
    assert_eq!(condition(broken, "Degraded")["status"], "True");
    assert_eq!(condition(broken, "Degraded")["reason"], "OutputNotFound");
    assert_eq!(condition(broken, "Ready")["status"], "False");
    assert_eq!(
        broken["problems"],
        json!(["spec.localOutputRefs[0]: Output team-a/missing does not exist"])
    );
    let app = &find(&calls, "PATCH", FLOW_STATUS).body["status"];
    assert_eq!(condition(app, "Ready")["status"], "True");
    // Only the broken Flow gets a warning.
    let warnings = calls
        .iter()
        .filter(|c| c.method == "POST" && c.body["type"] == "Warning")
        .count();
    assert_eq!(warnings, 1);

    // At rest, the same problem is not announced again.
    harness.observe(&calls);
    harness.settle().await;
    let again = harness.reconcile().await;
    assert_eq!(lines(&again), Vec::<String>::new());
}

/// Statuses found current are not recomputed while the object and what it is computed
/// from stay the same; a problem that comes or goes without the object changing (a Secret
/// its Output needs deleted, say) must still reach its status.
#[tokio::test]
async fn a_problem_of_an_unchanged_object_reaches_its_status_both_ways() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let key = ObjectKey::namespaced(Kind::Flow, "team-a", "app");
    let problem = Problem {
        reason: "OutputNotFound",
        field: "spec.localOutputRefs[0]".to_owned(),
        message: "Output team-a/store does not exist".to_owned(),
    };
    let set_problems = |harness: &Harness, problems: Vec<Problem>| {
        let mut resolution = harness
            .canned
            .resolution
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        resolution.problems.insert(key.clone(), problems);
    };

    set_problems(&harness, vec![problem]);
    let calls = harness.reconcile().await;
    let degraded = &find(&calls, "PATCH", FLOW_STATUS).body["status"];
    assert_eq!(condition(degraded, "Degraded")["status"], "True");
    let warnings = calls.iter().filter(|c| c.body["type"] == "Warning").count();
    assert_eq!(warnings, 1, "{:#?}", lines(&calls));
    harness.observe(&calls);
    harness.settle().await;

    set_problems(&harness, vec![]);
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![format!("PATCH {FLOW_STATUS}?{APPLY_QUERY}")]
    );
    let healed = &calls[0].body["status"];
    assert_eq!(condition(healed, "Degraded")["status"], "False");
    assert_eq!(condition(healed, "Ready")["status"], "True");
}

/// A Flow deleted between the cache read and its status write: the API server answers 404,
/// and the reconcile goes on (no failure, no Warning on the Logging, no backoff).
#[tokio::test]
async fn a_status_write_to_an_object_deleted_meanwhile_is_skipped() {
    let harness = Harness::new(
        logging_json(None),
        vec![flow_json("app", 1, None), flow_json("gone", 1, None)],
    );
    let gone = "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/gone/status";
    harness.respond_once(
        "PATCH",
        gone,
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "NotFound", "code": 404, "message": "flows \"gone\" not found"}),
    );
    let calls = harness.reconcile().await;
    find(&calls, "PATCH", gone);
    find(&calls, "PATCH", FLOW_STATUS);
    assert!(
        calls.iter().all(|c| c.body["type"] != "Warning"),
        "{:#?}",
        lines(&calls)
    );
    let text = harness.ctx.metrics.encode();
    assert!(text.contains("sluice_status_writes_pending 0"), "{text}");
}

#[tokio::test]
async fn requeues_at_the_next_certificate_change() {
    let harness = Harness::new(logging_json(None), vec![]);
    let next = harness.now + jiff::SignedDuration::from_secs(150);
    *harness
        .canned
        .plan
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = plan(harness.now, Some(next));
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(150))
        )
    );

    // A change further away than the safety requeue waits for the safety requeue.
    let far = harness.now + jiff::SignedDuration::from_hours(24 * 30);
    *harness
        .canned
        .plan
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = plan(harness.now, Some(far));
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Settings::default().resync)
        )
    );

    // Nothing planned: only the long safety requeue.
    *harness
        .canned
        .plan
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = plan(harness.now, None);
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Settings::default().resync)
        )
    );
}

fn labelled_secret(name: &str, labels: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": CONTROL, "labels": labels,
                     "uid": format!("uid-{name}"), "resourceVersion": "5"},
        "data": {}
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn leftovers_are_deleted_by_label_and_nothing_else() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let writer = harness
        .writers
        .children
        .get_mut(&ChildKind::Secret)
        .unwrap_or_else(|| panic!("no Secret writer"));
    writer.apply_watcher_event(&watcher::Event::Apply(labelled_secret(
        "main-aggregator-config-1",
        json!({"app.kubernetes.io/managed-by": "sluice", "logging.sluice.dev/logging": "main"}),
    )));
    writer.apply_watcher_event(&watcher::Event::Apply(labelled_secret(
        "other-aggregator-config-1",
        json!({"app.kubernetes.io/managed-by": "sluice", "logging.sluice.dev/logging": "other"}),
    )));
    writer.apply_watcher_event(&watcher::Event::Apply(labelled_secret(
        "not-managed",
        json!({"logging.sluice.dev/logging": "main"}),
    )));
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![
            "DELETE /api/v1/namespaces/sluice-system/secrets/main-aggregator-config-1?".to_owned(),
            "POST /apis/events.k8s.io/v1/namespaces/default/events?".to_owned(),
        ]
    );
    assert_eq!(calls[0].body["propagationPolicy"], "Background");
    assert_eq!(calls[1].body["reason"], "DeletedUnused");
}

#[tokio::test]
async fn status_is_written_only_when_it_differs() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    // A new generation of the Flow: its status must say it observed it, nothing else moves.
    harness.edit_flow("app", 2);
    harness.advance(3600);
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![format!("PATCH {FLOW_STATUS}?{APPLY_QUERY}")]
    );
    let written = &calls[0].body["status"];
    assert_eq!(written["observedGeneration"], 2);
    assert_eq!(condition(written, "Ready")["observedGeneration"], 2);
    // The condition did not flip, so its transition time is the original one.
    assert_eq!(
        condition(written, "Ready")["lastTransitionTime"],
        "2027-01-15T08:00:00Z"
    );
}

#[tokio::test]
async fn an_immutable_field_change_recreates_the_statefulset() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let mut changed = workload(ChildKind::StatefulSet, "StatefulSet", &names().aggregator());
    changed.object.data["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "buffers"}, "spec": {"resources": {"requests": {"storage": "20Gi"}}}}]);
    harness
        .canned
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())[2] = changed;
    harness.respond_once("PATCH", STS_PATH, 422, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                   "code": 422, "message": "StatefulSet.apps \"main-aggregator\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"}));
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls)[..4],
        [
            format!("PATCH {STS_PATH}?{APPLY_QUERY}"),
            format!("DELETE {STS_PATH}?"),
            format!("PATCH {STS_PATH}?{APPLY_QUERY}"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events?".to_owned(),
        ]
    );
    assert_eq!(calls[1].body["propagationPolicy"], "Background");
    assert_eq!(calls[3].body["reason"], "WorkloadRecreated");
    // Nothing but the StatefulSet is touched.
    assert!(
        calls.iter().all(|c| c.path == STS_PATH
            || !c.is_write()
            || c.path.contains("/events")
            || c.path.ends_with("/status")),
        "{:#?}",
        lines(&calls)
    );
}

#[tokio::test]
async fn referenced_user_secrets_are_read_by_name_never_listed() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    let mut output = output_json();
    output["spec"] = json!({"http": {"endpoint": "https://logs.example.com",
        "basicAuth": {"username": "u", "passwordSecretRef": {"name": "creds", "key": "password"}}}});
    harness
        .writers
        .outputs
        .apply_watcher_event(&watcher::Event::Apply(guard(output)));
    let secret_path = "/api/v1/namespaces/team-a/secrets/creds";
    let calls = harness.reconcile().await;
    assert_eq!(calls[0].line(), format!("GET {secret_path}?"));
    assert!(
        calls.iter().all(|c| !c.path.ends_with("/secrets")),
        "no Secret list: {:#?}",
        lines(&calls)
    );
    harness.observe(&calls);
    // A missing Secret is not asked for again within the resync interval: references to
    // missing Secrets cannot multiply the reads of every reconcile.
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| c.method != "GET"),
        "{:#?}",
        lines(&calls)
    );
    harness.observe(&calls);
    harness.advance(i64::try_from(Settings::default().resync.as_secs()).unwrap_or(600));

    // A Secret that exists is reused until the resync interval has passed.
    harness.respond_once(
        "GET",
        secret_path,
        200,
        json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "team-a"},
                   "data": {"password": "cHc="}}),
    );
    let calls = harness.reconcile().await;
    assert_eq!(lines(&calls)[0], format!("GET {secret_path}?"));
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| c.method != "GET"),
        "{:#?}",
        lines(&calls)
    );
    harness.advance(i64::try_from(Settings::default().resync.as_secs()).unwrap_or(600));
    let calls = harness.reconcile().await;
    assert_eq!(lines(&calls)[0], format!("GET {secret_path}?"));
}

/// The default RBAC grants no Namespace writes: an existing control namespace (always the
/// case for a listed one) is never applied, even by a fresh process; a missing one is.
#[tokio::test]
async fn an_existing_control_namespace_is_never_written() {
    let namespace = || Child {
        kind: ChildKind::Namespace,
        object: serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROL}}),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    };
    let namespace_path = format!("/api/v1/namespaces/{CONTROL}");
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness
        .canned
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(0, namespace());

    // Missing (only `--control-namespaces=*` may meet this): created.
    let calls = harness.reconcile().await;
    assert_eq!(
        calls[0].line(),
        format!("PATCH {namespace_path}?{APPLY_QUERY}")
    );
    harness.observe(&calls);

    // Existing: never sent again, also not by a restarted operator with empty memory.
    for restart in [false, true] {
        if restart {
            harness.restart();
        }
        let calls = harness.reconcile().await;
        assert!(
            calls.iter().all(|c| c.path != namespace_path),
            "{:#?}",
            lines(&calls)
        );
        harness.observe(&calls);
    }
}

/// A tenant referencing many Secrets that never answer: they are read concurrently (one
/// reconcile costs about one timeout, not one per reference), and neither they nor missing
/// ones are read again within the resync interval.
#[tokio::test]
async fn many_unreadable_secrets_are_read_concurrently_and_remembered() {
    const REFERENCES: usize = 24;
    let timeout = Duration::from_millis(300);
    let mut fixture_outputs = Vec::new();
    for i in 0..REFERENCES {
        let mut output = output_json();
        output["metadata"]["name"] = json!(format!("store-{i}"));
        output["metadata"]["uid"] = json!(format!("uid-store-{i}"));
        output["spec"] = json!({"http": {"endpoint": "https://logs.example.com",
            "basicAuth": {"username": "u", "passwordSecretRef": {"name": format!("gone-{i}"), "key": "p"}}}});
        fixture_outputs.push(output);
    }
    let harness = Harness::start(Fixture {
        loggings: vec![logging_json(None)],
        flows: vec![flow_json("app", 1, None)],
        outputs: fixture_outputs,
        control_namespaces: vec![CONTROL.to_owned()],
        settings: Settings {
            secret_read_timeout: timeout,
            ..Settings::default()
        },
        ..Fixture::default()
    });
    // Half never answer, half are missing (the default 404).
    for i in (0..REFERENCES).step_by(2) {
        harness.respond_once(
            "GET",
            &format!("/api/v1/namespaces/team-a/secrets/gone-{i}"),
            NO_ANSWER,
            Value::Null,
        );
    }
    let started = std::time::Instant::now();
    let calls = harness.reconcile().await;
    let elapsed = started.elapsed();
    let gets = calls.iter().filter(|c| c.method == "GET").count();
    assert_eq!(gets, REFERENCES, "{:#?}", lines(&calls));
    // Sequential reads would take REFERENCES / 2 timeouts (3.6 s).
    assert!(
        elapsed < timeout * 6,
        "{elapsed:?}: Secret reads are not concurrent"
    );

    // Within the resync interval nothing is read again, found or not.
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| c.method != "GET"),
        "{:#?}",
        lines(&calls)
    );
    harness.advance(i64::try_from(Settings::default().resync.as_secs()).unwrap_or(600));
    let calls = harness.reconcile().await;
    let gets = calls.iter().filter(|c| c.method == "GET").count();
    assert_eq!(gets, REFERENCES, "re-read after the resync interval");
}

#[tokio::test]
async fn a_control_namespace_outside_the_allowed_list_applies_nothing() {
    let mut logging = logging_json(None);
    logging["spec"]["controlNamespace"] = json!("kube-system");
    // The model decides (`model::admit`): the real one, not a canned resolution.
    let harness = Harness::start(Fixture {
        loggings: vec![logging],
        flows: vec![flow_json("app", 1, None)],
        outputs: vec![output_json()],
        control_namespaces: vec![CONTROL.to_owned()],
        real_cores: true,
        ..Fixture::default()
    });
    let calls = harness.reconcile().await;
    assert!(
        calls
            .iter()
            .all(|c| c.path.ends_with("/status") || c.path.contains("/events")),
        "{:#?}",
        lines(&calls)
    );
    let status = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_eq!(
        condition(status, "Degraded")["reason"],
        "ControlNamespaceNotAllowed"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    let warning = calls
        .iter()
        .find(|c| c.method == "POST" && c.body["type"] == "Warning")
        .unwrap_or_else(|| panic!("no warning in {:#?}", lines(&calls)));
    assert_eq!(warning.body["reason"], "ControlNamespaceNotAllowed");
}

/// The examples as the API server would hold them: with uids and generations.
fn served_examples() -> (sluice::model::Objects, Fixture) {
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    let loaded = sluice::cli::input::load(&[dir]).unwrap_or_else(|e| panic!("{e:?}"));
    let mut inventory = loaded.objects;
    fn stamp<K: kube::Resource>(object: &mut K) {
        let meta = object.meta_mut();
        meta.uid = Some(format!(
            "uid-{}-{}",
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default()
        ));
        meta.generation = Some(1);
        meta.resource_version = Some("1".to_owned());
    }
    fn values<K: kube::Resource + serde::Serialize>(objects: &mut [K]) -> Vec<Value> {
        objects
            .iter_mut()
            .map(|o| {
                stamp(o);
                serde_json::to_value(&*o).unwrap_or_default()
            })
            .collect()
    }
    let mut served = BTreeMap::new();
    for secret in &mut inventory.secrets {
        stamp(secret);
        served.insert(
            format!(
                "/api/v1/namespaces/{}/secrets/{}",
                secret.namespace().unwrap_or_default(),
                secret.name_any()
            ),
            serde_json::to_value(&*secret).unwrap_or_default(),
        );
    }
    let fixture = Fixture {
        loggings: values(&mut inventory.loggings),
        flows: values(&mut inventory.flows),
        outputs: values(&mut inventory.outputs),
        cluster_flows: values(&mut inventory.cluster_flows),
        cluster_outputs: values(&mut inventory.cluster_outputs),
        namespaces: values(&mut inventory.namespaces),
        served,
        control_namespaces: vec!["sluice-system".to_owned()],
        real_cores: true,
        settings: Settings::default(),
    };
    (inventory, fixture)
}

fn child_path(child: &Child) -> String {
    let (resource, namespaced) = api_resource(child.kind);
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    match (namespaced, child.object.namespace()) {
        (true, Some(ns)) => format!(
            "{prefix}/namespaces/{ns}/{}/{}",
            resource.plural,
            child.object.name_any()
        ),
        _ => format!("{prefix}/{}/{}", resource.plural, child.object.name_any()),
    }
}

#[tokio::test]
async fn the_examples_apply_exactly_what_render_builds() {
    let (inventory, fixture) = served_examples();
    let harness = Harness::start(fixture);
    let calls = harness.reconcile().await;

    // The same pure steps `sluice render` runs, on the same input.
    let resolution = sluice::model::resolve(&inventory.inventory());
    let pipeline = resolution
        .pipelines
        .iter()
        .find(|p| p.logging == "main")
        .unwrap_or_else(|| panic!("no pipeline"));
    let existing = BTreeMap::new();
    // Through the controller's own wiring of the planner (one place to adapt if it changes).
    let plan = (Cores::default().plan)(&sluice::pki::PkiRequest {
        names: &pipeline.names,
        tls: &pipeline.spec.tls_or_default(),
        now: harness.now,
        existing: &existing,
        rollout: sluice::pki::Rollout::Unobserved,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<String> = sluice::build::objects(pipeline, &plan)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|c| format!("PATCH {}?{APPLY_QUERY}", child_path(c)))
        .collect();
    let applied: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
        .map(Call::line)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(applied, expected);

    // Referenced user Secrets were read by name; nothing was listed or deleted.
    assert!(
        calls
            .iter()
            .any(|c| c.method == "GET" && c.path.contains("/secrets/"))
    );
    assert!(
        calls.iter().all(|c| c.method != "DELETE"),
        "{:#?}",
        lines(&calls)
    );

    // Every namespaced child is owned by the Logging, so deleting it removes them.
    let namespaced = |path: &str| {
        path.split_once("/namespaces/")
            .is_some_and(|(_, rest)| rest.contains('/'))
    };
    for call in calls
        .iter()
        .filter(|c| c.method == "PATCH" && namespaced(&c.path) && !c.path.ends_with("/status"))
    {
        let owner = &call.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Logging", "{}", call.path);
        assert_eq!(owner["uid"], "uid--main", "{}", call.path);
    }

    // The examples are valid: every Flow and Output is in the configuration, none Degraded,
    // and none Ready yet: no aggregator pod runs the configuration (none answers here).
    let statuses: Vec<&Call> = calls
        .iter()
        .filter(|c| c.path.ends_with("/status") && !c.path.contains("/loggings/"))
        .collect();
    assert!(!statuses.is_empty());
    for call in statuses {
        let ready = condition(&call.body["status"], "Ready");
        let degraded = condition(&call.body["status"], "Degraded");
        let in_use = ready["reason"] == "Pending";
        let unused = ready["reason"] == "Unused" && ready["status"] == "True";
        assert!(in_use || unused, "{}: {}", call.path, call.body);
        assert_eq!(degraded["status"], "False", "{}: {}", call.path, call.body);
        // Every example flow is part of the rendered configuration.
        if call.path.contains("flows/") {
            assert_eq!(ready["reason"], "Pending", "{}", call.path);
        }
    }

    // The Logging reports how its buffers share the buffer volume.
    let logging = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_eq!(
        logging["buffers"],
        serde_json::to_value(pipeline.buffers.status()).unwrap_or_default()
    );
    assert_eq!(logging["buffers"]["volume"], "20Gi");
}

#[tokio::test]
async fn a_restart_writes_nothing_new() {
    let mut harness = Harness::new(
        logging_json(None),
        vec![flow_json("app", 1, None), flow_json("broken", 1, None)],
    );
    harness
        .canned
        .resolution
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .problems
        .insert(
            ObjectKey::namespaced(Kind::Flow, "team-a", "broken"),
            vec![Problem {
                reason: "OutputNotFound",
                field: "spec.localOutputRefs[0]".to_owned(),
                message: "Output team-a/missing does not exist".to_owned(),
            }],
        );
    harness.settle().await;
    harness.restart();
    let calls = harness.reconcile().await;
    // Children are applied once more (server-side no-ops), but no status write and no
    // Event: the problem is already on record.
    assert!(
        calls
            .iter()
            .all(|c| c.method == "PATCH" && c.query == APPLY_QUERY && !c.path.ends_with("/status")),
        "{:#?}",
        lines(&calls)
    );
    harness.observe(&calls);
    assert_eq!(lines(&harness.reconcile().await), Vec::<String>::new());
}

#[tokio::test]
async fn a_child_the_api_server_rejects_degrades_the_logging_and_the_rest_is_applied() {
    let harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.respond_once("PATCH", DS_PATH, 422, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                   "code": 422, "message": "DaemonSet.apps \"main-agent\" is invalid: spec.template.spec.affinity: Invalid value"}));
    let calls = harness.reconcile().await;
    find(&calls, "PATCH", STS_PATH);
    let status = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_eq!(condition(status, "Degraded")["status"], "True");
    assert_eq!(condition(status, "Degraded")["reason"], "ApplyRejected");
    let warning = calls
        .iter()
        .find(|c| c.method == "POST" && c.body["type"] == "Warning")
        .unwrap_or_else(|| panic!("no warning in {:#?}", lines(&calls)));
    assert_eq!(warning.body["reason"], "ApplyRejected");
}

#[tokio::test]
async fn secrets_just_applied_count_as_existing_before_the_cache_sees_them() {
    let harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.reconcile().await;
    // No watch event has reached the cache yet.
    harness.reconcile().await;
    let existing = harness
        .canned
        .existing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(existing[0], Vec::<String>::new());
    assert_eq!(existing[1], vec!["main-agent-config".to_owned()]);
}

#[tokio::test]
async fn a_secret_deleted_after_the_cache_saw_it_is_gone() {
    let mut harness = Harness::new(logging_json(None), vec![flow_json("app", 1, None)]);
    harness.settle().await;
    let cached = harness
        .ctx
        .stores
        .children_of(ChildKind::Secret)
        .first()
        .map(|s| (**s).clone())
        .unwrap_or_else(|| panic!("no cached Secret"));
    if let Some(writer) = harness.writers.children.get_mut(&ChildKind::Secret) {
        writer.apply_watcher_event(&watcher::Event::Delete(cached));
    }
    harness
        .canned
        .existing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let calls = harness.reconcile().await;
    let existing = harness
        .canned
        .existing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(existing[0], Vec::<String>::new());
    // And it is created again (with a Created Event, counted in the earlier Event's series).
    assert_eq!(
        lines(&calls)[0],
        format!("PATCH {SECRET_PATH}?{APPLY_QUERY}")
    );
    assert_eq!(calls.len(), 2, "{:#?}", lines(&calls));
    assert!(calls[1].path.contains("/events"));
}

#[tokio::test]
async fn the_examples_settle_and_then_nothing_is_sent() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    // Real TLS planning and building: the material minted on the first pass is read back
    // from the cache and reproduced byte for byte, so nothing is applied again.
    let calls = harness.reconcile().await;
    assert_eq!(lines(&calls), Vec::<String>::new());
    // An hour later: user Secrets are read again (the resync interval passed), nothing is
    // written, certificates included.
    harness.advance(3600);
    let calls = harness.reconcile().await;
    assert!(calls.iter().all(|c| !c.is_write()), "{:#?}", lines(&calls));
    assert!(calls.iter().any(|c| c.path.contains("/secrets/")));
}

#[tokio::test]
async fn certificates_due_for_renewal_are_reissued_and_announced() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    // Past two thirds of the default 90-day leaf lifetime.
    harness.advance(61 * 24 * 3600);
    let calls = harness.reconcile().await;
    let names = Names::new("main", "sluice-system");
    for secret in [names.agent_tls_secret(), names.aggregator_tls_secret()] {
        let path = format!("/api/v1/namespaces/sluice-system/secrets/{secret}");
        find(&calls, "PATCH", &path);
    }
    // The pods roll: the workloads' TLS hash annotation changed.
    find(
        &calls,
        "PATCH",
        "/apis/apps/v1/namespaces/sluice-system/daemonsets/main-agent",
    );
    let rotated = calls
        .iter()
        .find(|c| c.path.contains("/events") && c.body["reason"] == "CertificatesRotated")
        .unwrap_or_else(|| panic!("no CertificatesRotated event in {:#?}", lines(&calls)));
    assert_eq!(rotated.body["regarding"]["name"], "main");
    // Nothing else is due now: the next reconcile writes nothing.
    harness.observe(&calls);
    harness.settle().await;
    let calls = harness.reconcile().await;
    assert!(calls.iter().all(|c| !c.is_write()), "{:#?}", lines(&calls));
}

// ---------------------------------------------------------------------------------------
// Nothing about one object's references can fail a Logging's reconcile: a Secret that cannot
// be read degrades the Output referencing it, and another team's edit is still applied.

fn team_object(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": kind,
        // Unique per object, as the API server's are: a Flow and its Output share names.
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{kind}-{namespace}-{name}"),
                     "generation": 1, "resourceVersion": "20"},
        "spec": spec
    })
}

/// Team b's Flow, with a grep pattern that shows up in the rendered configuration.
fn team_b_flow(marker: &str) -> Value {
    team_object(
        "Flow",
        "team-b",
        "app",
        json!({"filters": [{"grep": {"regexp": [{"key": "message", "pattern": marker}]}}],
               "localOutputRefs": ["store"]}),
    )
}

/// Team a's Output refers to Secret `secret`; team b has a Flow and Output of its own.
fn isolation_harness(secret: &str, settings: Settings) -> Harness {
    let namespace =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    Harness::start(Fixture {
        loggings: vec![logging_json(None)],
        flows: vec![
            team_object(
                "Flow",
                "team-a",
                "app",
                json!({"localOutputRefs": ["store"]}),
            ),
            team_b_flow("first-edit"),
        ],
        outputs: vec![
            team_object(
                "Output",
                "team-a",
                "store",
                json!({"http": {"endpoint": "https://logs.example.com",
                    "basicAuth": {"username": "u", "passwordSecretRef": {"name": secret, "key": "password"}}}}),
            ),
            team_object("Output", "team-b", "store", json!({"nullOutput": {}})),
        ],
        namespaces: vec![namespace("team-a"), namespace("team-b")],
        control_namespaces: vec![CONTROL.to_owned()],
        real_cores: true,
        settings,
        ..Fixture::default()
    })
}

/// The decoded aggregator configuration applied by these calls (every Secret of its bundle
/// they wrote), if any.
fn applied_aggregator_config(calls: &[Call]) -> Option<String> {
    let paths: Vec<String> = names()
        .candidate_bundle_secrets(sluice::layout::AGGREGATOR_COMPONENT)
        .iter()
        .map(|name| format!("/api/v1/namespaces/{CONTROL}/secrets/{name}"))
        .collect();
    let mut text = String::new();
    let mut found = false;
    for call in calls
        .iter()
        .filter(|c| c.method == "PATCH" && paths.contains(&c.path))
    {
        found = true;
        text.push_str(&secret_text(call)?);
    }
    if !found {
        return None;
    }
    Some(text)
}

/// The decoded `data` values of an applied Secret, concatenated.
fn secret_text(call: &Call) -> Option<String> {
    use base64::Engine;
    let mut text = String::new();
    for value in call.body["data"].as_object()?.values() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .unwrap_or_default();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    Some(text)
}

/// Reconciles (which must succeed), checks team a's Output is Degraded for `reason` and team
/// b's Flow is applied; then team b edits its Flow and the edit reaches the config Secret.
async fn assert_only_the_output_degrades(mut harness: Harness, reason: &str) -> Vec<Call> {
    let calls = harness.reconcile().await;
    let status = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/outputs/store/status",
    )
    .body["status"];
    assert_eq!(condition(status, "Degraded")["status"], "True", "{status}");
    assert_eq!(condition(status, "Degraded")["reason"], reason, "{status}");
    let team_b = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/team-b/flows/app/status",
    )
    .body["status"];
    // In the configuration, waiting for aggregator pods (none answers here).
    assert_eq!(condition(team_b, "Ready")["reason"], "Pending", "{team_b}");
    let config =
        applied_aggregator_config(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(config.contains("first-edit"));
    harness.observe(&calls);

    let mut edit = team_b_flow("second-edit");
    // As the API server does on every change of a spec.
    edit["metadata"]["generation"] = json!(2);
    edit["metadata"]["resourceVersion"] = json!("21");
    harness
        .writers
        .flows
        .apply_watcher_event(&watcher::Event::Apply(guard(edit)));
    let edited = harness.reconcile().await;
    let config =
        applied_aggregator_config(&edited).unwrap_or_else(|| panic!("{:#?}", lines(&edited)));
    assert!(config.contains("second-edit"), "team b's edit is applied");
    calls
}

const TEAM_A_SECRET: &str = "/api/v1/namespaces/team-a/secrets/creds";

#[tokio::test]
async fn a_forbidden_secret_degrades_only_its_output() {
    let harness = isolation_harness("creds", Settings::default());
    for _ in 0..2 {
        harness.respond_once(
            "GET",
            TEAM_A_SECRET,
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                   "code": 403, "message": "secrets \"creds\" is forbidden"}),
        );
    }
    let calls = assert_only_the_output_degrades(harness, "SecretUnreadable").await;
    find(&calls, "GET", TEAM_A_SECRET);
    assert!(
        team_a_problems(&calls).contains("is forbidden"),
        "{}",
        team_a_problems(&calls)
    );
}

/// The problems written into team a's Output status, as one string.
fn team_a_problems(calls: &[Call]) -> String {
    find(
        calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/outputs/store/status",
    )
    .body["status"]["problems"]
        .to_string()
}

#[tokio::test]
async fn a_missing_secret_degrades_only_its_output() {
    let harness = isolation_harness("creds", Settings::default());
    let calls = assert_only_the_output_degrades(harness, "SecretNotFound").await;
    find(&calls, "GET", TEAM_A_SECRET);
}

#[tokio::test]
async fn a_secret_name_the_api_cannot_take_is_never_requested() {
    let harness = isolation_harness("a b", Settings::default());
    let calls = assert_only_the_output_degrades(harness, "InvalidSecretName").await;
    assert!(
        calls.iter().all(|c| !c.path.contains("/secrets/a")),
        "{:#?}",
        lines(&calls)
    );
}

#[tokio::test]
async fn a_secret_read_that_never_answers_times_out_and_degrades_only_its_output() {
    let settings = Settings {
        secret_read_timeout: Duration::from_millis(200),
        ..Settings::default()
    };
    let harness = isolation_harness("creds", settings);
    for _ in 0..2 {
        harness.respond_once("GET", TEAM_A_SECRET, NO_ANSWER, Value::Null);
    }
    let calls = assert_only_the_output_degrades(harness, "SecretUnreadable").await;
    find(&calls, "GET", TEAM_A_SECRET);
    assert!(
        team_a_problems(&calls).contains("no answer within 200ms"),
        "{}",
        team_a_problems(&calls)
    );
}

/// A Flow whose two filters set 64 keys of `fill` bytes each: about `128 * fill` bytes of
/// config.
fn bulky_flow(name: &str, fill: usize) -> Value {
    let records: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("key{i:02}"), Value::String("x".repeat(fill))))
        .collect();
    team_object(
        "Flow",
        "team-b",
        name,
        json!({"filters": [{"recordTransformer": {"records": records}},
                       {"recordTransformer": {"records": records}}],
               "localOutputRefs": ["sink"]}),
    )
}

#[tokio::test]
async fn a_flow_its_full_config_slot_leaves_out_is_degraded_alone() {
    use sluice::render::fluentd::config_slot;
    let slot = |name: &str| config_slot(&ObjectKey::namespaced(Kind::Flow, "team-b", name));
    // Two Flows sharing a slot, each taking more than half of its 900 KiB: the second by key
    // is the one left out.
    let first = "bulky-0";
    let second = (1..1000)
        .map(|i| format!("bulky-{i}"))
        .find(|name| slot(name) == slot(first))
        .unwrap();
    let mut harness = isolation_harness("creds", Settings::default());
    let sink = team_object(
        "Output",
        "team-b",
        "sink",
        json!({"http": {"endpoint": "https://logs.example.com"}}),
    );
    harness
        .writers
        .outputs
        .apply_watcher_event(&watcher::Event::Apply(guard(sink)));
    for flow in [bulky_flow(first, 4000), bulky_flow(&second, 4000)] {
        harness
            .writers
            .flows
            .apply_watcher_event(&watcher::Event::Apply(guard(flow)));
    }
    let calls = harness.reconcile().await;
    let status_of = |name: &str| {
        find(
            &calls,
            "PATCH",
            &format!("/apis/logging.sluice.dev/v1alpha1/namespaces/team-b/flows/{name}/status"),
        )
        .body["status"]
            .clone()
    };
    let left_out = status_of(&second);
    assert_eq!(
        condition(&left_out, "Degraded")["status"],
        "True",
        "{left_out}"
    );
    assert_eq!(
        condition(&left_out, "Degraded")["reason"],
        "ConfigSlotFull",
        "{left_out}"
    );
    assert_eq!(
        condition(&left_out, "Ready")["status"],
        "False",
        "{left_out}"
    );
    for kept in [first, "app"] {
        let status = status_of(kept);
        // In the configuration, waiting for aggregator pods (none answers here).
        assert_eq!(
            condition(&status, "Ready")["reason"],
            "Pending",
            "{kept}: {status}"
        );
    }
    let logging = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_ne!(
        condition(logging, "Degraded")["status"],
        "True",
        "{logging}"
    );
    let config = applied_aggregator_config(&calls).unwrap();
    assert!(
        config.contains(&format!("team-b/{first}")),
        "the first bulky flow is configured"
    );
    assert!(
        !config.contains(&format!("team-b/{second}")),
        "the second is not"
    );
    // Its records would only be dropped at the aggregator: agents do not route them there.
    let routes = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    let route = |name: &str| {
        let label =
            sluice::render::fluentd::flow_label(&ObjectKey::namespaced(Kind::Flow, "team-b", name));
        format!("\"{}\"", sluice::render::edge::flow_route(&label))
    };
    assert!(routes.contains(&route(first)), "{routes}");
    assert!(!routes.contains(&route(&second)), "{routes}");
}

/// The agents' routing table (every Secret of it) as the reconcile applied it.
fn applied_agent_routes(calls: &[Call]) -> Option<String> {
    let texts: Vec<String> = names()
        .agent_routes_secrets()
        .iter()
        .filter_map(|name| {
            let path = format!("/api/v1/namespaces/{CONTROL}/secrets/{name}");
            secret_text(
                calls
                    .iter()
                    .find(|c| c.method == "PATCH" && c.path == path)?,
            )
        })
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

fn many_flows_harness(flows: usize, settings: Settings) -> Harness {
    Harness::start(Fixture {
        loggings: vec![logging_json(None)],
        flows: (0..flows)
            .map(|i| flow_json(&format!("app-{i:03}"), 1, None))
            .collect(),
        outputs: vec![output_json()],
        namespaces: vec![json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team-a", "labels": {"team": "a"}}
        })],
        control_namespaces: vec![CONTROL.to_owned()],
        settings,
        ..Fixture::default()
    })
}

fn is_object_status(call: &Call) -> bool {
    call.path.ends_with("/status") && call.path != LOGGING_STATUS
}

#[tokio::test]
async fn the_config_goes_first_and_status_writes_wait_while_a_reconcile_applies_config() {
    let settings = Settings {
        status_concurrency: 4,
        ..Settings::default()
    };
    let mut harness = many_flows_harness(60, settings);
    let calls = harness.reconcile().await;
    let writes: Vec<&Call> = calls.iter().filter(|c| c.is_write()).collect();
    let config = writes
        .iter()
        .position(|c| c.path == SECRET_PATH)
        .unwrap_or_else(|| panic!("no config write in {:#?}", lines(&calls)));
    let first_status = writes
        .iter()
        .position(|c| c.path.ends_with("/status"))
        .unwrap_or_else(|| panic!("no status write in {:#?}", lines(&calls)));
    assert!(config < first_status, "{:#?}", lines(&calls));
    harness.observe(&calls);

    // Another reconcile is applying configuration (the edit below stands for it): the
    // statuses the next reconcile queues wait for it to finish.
    let ctx = harness.ctx.clone();
    let applying = ctx.status_writer.config_phase();
    harness.edit_flow("app-017", 2);
    harness
        .canned
        .resolution
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .problems
        .insert(
            ObjectKey::namespaced(Kind::Flow, "team-a", "app-017"),
            vec![Problem {
                reason: "InvalidMatch",
                field: "spec.match[0]".to_owned(),
                message: "broken".to_owned(),
            }],
        );
    harness.ctx.trigger.bump();
    harness
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone()).await;
    assert!(action.is_ok(), "{action:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = harness
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(!held.iter().any(is_object_status), "{:#?}", lines(&held));
    let text = harness.ctx.metrics.encode();
    assert!(text.contains("sluice_status_writes_pending 1"), "{text}");
    drop(applying);
    harness.ctx.status_writer.until_idle().await;
    let calls = harness
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let statuses: Vec<String> = calls
        .iter()
        .filter(|c| is_object_status(c))
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(
        statuses,
        ["/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/app-017/status"]
    );
    let text = harness.ctx.metrics.encode();
    assert!(text.contains("sluice_status_writes_pending 0"), "{text}");
}

#[tokio::test]
async fn status_writes_run_concurrently_up_to_the_bound_and_never_hold_up_the_reconcile() {
    let settings = Settings {
        status_concurrency: 8,
        ..Settings::default()
    };
    let harness = many_flows_harness(20, settings);
    // No answer to any status write: the first batch is all that can be in flight.
    for i in 0..20 {
        harness.respond_once(
            "PATCH",
            &format!("/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/app-{i:03}/status"),
            NO_ANSWER,
            Value::Null,
        );
    }
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone()).await;
    assert!(action.is_ok(), "{action:?}");
    let in_flight = || {
        harness
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| is_object_status(c))
            .count()
    };
    for _ in 0..100 {
        if in_flight() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(in_flight(), 8);
    let text = harness.ctx.metrics.encode();
    assert!(
        text.contains("sluice_reconciles_total{kind=\"Logging\"} 1"),
        "{text}"
    );
    assert!(text.contains("sluice_status_writes_pending 21"), "{text}");
}

#[tokio::test]
async fn a_status_write_that_never_answers_times_out_and_is_tried_again_after_a_backoff() {
    let settings = Settings {
        status_write_timeout: Duration::from_millis(200),
        error_backoff_min: Duration::from_millis(300),
        ..Settings::default()
    };
    let harness = many_flows_harness(1, settings);
    let flow_status = "/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/app-000/status";
    harness.respond_once("PATCH", flow_status, NO_ANSWER, Value::Null);
    // The reconcile itself succeeds: the status write is not part of it.
    let calls = harness.reconcile().await;
    find(&calls, "PATCH", OUTPUT_STATUS);
    let text = harness.ctx.metrics.encode();
    assert!(
        text.contains(
            "sluice_reconcile_errors_total{kind=\"Flow\",category=\"StatusPatchTimeout\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "sluice_reconcile_duration_seconds_count{kind=\"Logging\",outcome=\"changed\"} 1"
        ),
        "{text}"
    );
    // Tried again after the backoff, and answered this time.
    let retried = || {
        harness
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|c| c.method == "PATCH" && c.path == flow_status)
            .count()
    };
    assert_eq!(retried(), 1);
    for _ in 0..100 {
        if retried() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness.ctx.status_writer.until_idle().await;
    assert_eq!(retried(), 2);
    let text = harness.ctx.metrics.encode();
    assert!(text.contains("sluice_status_writes_pending 0"), "{text}");
}

#[tokio::test]
async fn one_flow_edit_at_steady_state_is_one_config_write_and_one_status_write() {
    let mut harness = many_flows_harness(50, Settings::default());
    harness.settle().await;
    // The edit: generation 2 of one Flow (as its watch delivers it) changes the config.
    harness.edit_flow("app-017", 2);
    harness.ctx.trigger.bump();
    harness
        .canned
        .children
        .lock()
        .unwrap_or_else(|e| e.into_inner())[0] = config_secret("pipeline: {edited: true}\n");
    let calls = harness.reconcile().await;
    assert_eq!(
        lines(&calls),
        vec![
            format!("PATCH {SECRET_PATH}?{APPLY_QUERY}"),
            format!(
                "PATCH /apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/app-017/status?{APPLY_QUERY}"
            ),
        ]
    );
    let text = harness.ctx.metrics.encode();
    // The edit's latency was measured once, when its config was applied.
    assert!(
        text.contains("sluice_edit_to_config_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "sluice_reconcile_duration_seconds_count{kind=\"Logging\",outcome=\"changed\"}"
        ),
        "{text}"
    );
    let unchanged = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(
                    "sluice_reconcile_duration_seconds_count{kind=\"Logging\",outcome=\"unchanged\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = unchanged(&text);
    harness.observe(&calls);
    let calls = harness.reconcile().await;
    assert_eq!(lines(&calls), Vec::<String>::new());
    let text = harness.ctx.metrics.encode();
    assert_eq!(unchanged(&text), before + 1, "{text}");
    assert!(
        text.contains("sluice_edit_to_config_seconds_count 1"),
        "{text}"
    );
}

#[tokio::test]
async fn changes_arriving_while_statuses_are_written_do_not_stop_them() {
    let settings = Settings {
        status_concurrency: 4,
        ..Settings::default()
    };
    let harness = many_flows_harness(60, settings);
    // Edits of Sluice objects, and the watch seeing our own Secrets, while statuses are
    // written: each status is still written, once.
    let trigger = harness.ctx.trigger.clone();
    *harness.hook.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(move |call| {
        if is_object_status(call) {
            trigger.bump();
            trigger.bump_other();
        }
    }));
    let calls = harness.reconcile().await;
    let mut statuses: Vec<&str> = calls
        .iter()
        .filter(|c| is_object_status(c))
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(statuses.len(), 61);
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses.len(), 61);
}

// ---------------------------------------------------------------------------------------
// Config rollout: promotion of what the data plane accepted, and rejections.

/// The revision in the manifest of a Secret the caches hold.
fn cached_revision(harness: &Harness, name: &str) -> String {
    cached_manifest(harness, name).revision
}

/// The manifest of a Secret the caches hold.
fn cached_manifest(harness: &Harness, name: &str) -> sluice::bundle::Manifest {
    use base64::Engine;
    let secret = harness
        .ctx
        .stores
        .children_of(ChildKind::Secret)
        .into_iter()
        .find(|s| s.name_any() == name)
        .unwrap_or_else(|| panic!("{name} is not cached"));
    let encoded = secret.data["data"][sluice::bundle::MANIFEST_FILE]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    sluice::bundle::Manifest::from_json(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

fn running(revision: &str) -> sluice::bundle::ReloaderStatus {
    sluice::bundle::ReloaderStatus {
        running: Some(revision.to_owned()),
        accepted: vec![revision.to_owned()],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_revision_a_pod_accepted_is_promoted_files_first_and_then_settles() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    // No reloader answers yet: nothing is promoted, the rest settles.
    harness.settle().await;
    let aggregator = cached_revision(&harness, &names().aggregator_config_secret());
    let agent = cached_revision(&harness, &names().agent_config_secret());
    harness.reloaders_answer("aggregator", vec![running(&aggregator)]);
    harness.reloaders_answer("agent", vec![running(&agent)]);
    let calls = harness.reconcile().await;
    let secrets = |calls: &[Call]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
            .map(|c| c.path.rsplit('/').next().unwrap_or_default().to_owned())
            .collect()
    };
    let mut expected = vec!["main-agent-accepted".to_owned()];
    expected.extend((1..=32).map(|slot| format!("main-aggregator-accepted-{slot:02}")));
    expected.push("main-aggregator-accepted-credentials".to_owned());
    // The manifest's Secret last: pods starting meanwhile never see it before its files.
    expected.push("main-aggregator-accepted".to_owned());
    assert_eq!(secrets(&calls), expected);
    for call in calls.iter().filter(|c| c.method == "PATCH") {
        assert_eq!(
            call.body["metadata"]["labels"]["logging.sluice.dev/config-set"],
            "accepted"
        );
        assert_eq!(
            call.body["metadata"]["ownerReferences"][0]["kind"],
            "Logging"
        );
    }
    // The accepted copy carries exactly the candidate's data.
    let main = find(
        &calls,
        "PATCH",
        "/api/v1/namespaces/sluice-system/secrets/main-aggregator-accepted",
    );
    harness.observe(&calls);
    assert_eq!(
        cached_revision(&harness, "main-aggregator-accepted"),
        aggregator
    );
    assert!(main.body["data"]["fluent.conf"].is_string());
    // Settled: nothing is written again.
    let calls = harness.reconcile().await;
    assert!(calls.iter().all(|c| !c.is_write()), "{:#?}", lines(&calls));
    // And orphan deletion never takes the accepted Secrets.
    assert!(calls.iter().all(|c| c.method != "DELETE"));
}

#[tokio::test]
async fn a_rejected_revision_degrades_the_logging_blames_the_named_flow_and_the_rest_goes_on() {
    let (inventory, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    let resolution = sluice::model::resolve(&inventory.inventory());
    let pipeline = &resolution.pipelines[0];
    let culprit = pipeline
        .flows
        .iter()
        .find(|f| f.key.kind == Kind::Flow)
        .unwrap_or_else(|| panic!("the examples have a namespaced Flow"))
        .key
        .clone();
    let label = sluice::render::fluentd::flow_label(&culprit);
    let route = sluice::render::edge::flow_route(&label);
    let tag = sluice::render::edge::route_tag(route);
    // The route's hash: in the flow's tag, its filters' patterns or its hand-off's pattern.
    let hash = route.trim_start_matches("flow-");
    let rejected = cached_revision(&harness, &names().aggregator_config_secret());
    let error = format!(
        "[error]: config error file=\"/sluice/active/revisions/x/fluent.conf\" error_class=Fluent::ConfigError error=\"unknown parameter in <filter {tag}>\""
    );
    harness.reloaders_answer(
        "aggregator",
        vec![sluice::bundle::ReloaderStatus {
            running: Some("an-older-revision".to_owned()),
            rejected: Some(sluice::bundle::Rejection {
                revision: rejected.clone(),
                error: error.clone(),
            }),
            ..Default::default()
        }],
    );
    let calls = harness.reconcile().await;
    // Nothing is promoted.
    assert!(
        calls.iter().all(|c| !c.path.contains("-accepted")),
        "{:#?}",
        lines(&calls)
    );
    let status = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/loggings/main/status",
    )
    .body["status"];
    let degraded = condition(status, "Degraded");
    assert_eq!(degraded["status"], "True", "{status}");
    assert_eq!(degraded["reason"], "ConfigRejected", "{status}");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown parameter"),
        "{degraded}"
    );
    let event = calls
        .iter()
        .find(|c| c.method == "POST" && c.body["reason"] == "ConfigRejected")
        .unwrap_or_else(|| panic!("no ConfigRejected Event in {:#?}", lines(&calls)));
    assert_eq!(event.body["type"], "Warning");
    harness.observe(&calls);

    // The next reconcile leaves the blamed Flow out: its slot is rewritten without it, its
    // status says why, and the other flows stay.
    let calls = harness.reconcile().await;
    let config = applied_aggregator_config(&calls).unwrap_or_else(|| {
        panic!(
            "the config is rewritten without the flow: {:#?}",
            lines(&calls)
        )
    });
    assert!(!config.contains(hash), "{config}");
    let flow_status = &find(
        &calls,
        "PATCH",
        &format!(
            "/apis/logging.sluice.dev/v1alpha1/namespaces/{}/flows/{}/status",
            culprit.namespace.clone().unwrap_or_default(),
            culprit.name
        ),
    )
    .body["status"];
    assert_eq!(
        condition(flow_status, "Degraded")["reason"],
        "ConfigRejected"
    );
    assert_eq!(condition(flow_status, "Ready")["status"], "False");
    harness.observe(&calls);

    // Editing the Flow (a new generation) brings it back.
    let mut edited = serde_json::to_value(
        inventory
            .flows
            .iter()
            .find(|f| f.name_any() == culprit.name)
            .unwrap_or_else(|| panic!("culprit in the inventory")),
    )
    .unwrap_or_default();
    edited["metadata"]["generation"] = json!(2);
    edited["metadata"]["uid"] = json!(format!(
        "uid-{}-{}",
        culprit.namespace.clone().unwrap_or_default(),
        culprit.name
    ));
    harness
        .writers
        .flows
        .apply_watcher_event(&watcher::Event::Apply(guard(edited)));
    let calls = harness.reconcile().await;
    let config = applied_aggregator_config(&calls)
        .unwrap_or_else(|| panic!("the flow returns: {:#?}", lines(&calls)));
    assert!(config.contains(hash), "{config}");
}

#[tokio::test]
async fn a_revision_no_pod_judged_yet_writes_nothing_and_looks_again_soon() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    // The pods still run an older revision and have not looked at the new one yet.
    harness.reloaders_answer("aggregator", vec![running("an-older-revision")]);
    harness
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = harness
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(calls.iter().all(|c| !c.is_write()), "{:#?}", lines(&calls));
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(sluice::controller::rollout::PENDING_RECHECK)
    );
}

/// Flows wait for the aggregator pods to run them: a pass in which no pod answered must come
/// back on its own (less often than when pods answer), or their Ready stays Pending until
/// the resync, ten minutes later (seen on a real API server).
#[tokio::test]
async fn objects_waiting_for_pods_that_did_not_answer_are_looked_at_again() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(
            sluice::controller::data_plane::UNANSWERED_RECHECK
        )
    );
    // Once every pod runs the candidate, nothing is waiting: only the safety requeue.
    let revision = cached_revision(&harness, &names().aggregator_config_secret());
    harness.reloaders_answer("aggregator", vec![running(&revision), running(&revision)]);
    let calls = harness.reconcile().await;
    harness.observe(&calls);
    let action = reconcile::reconcile(harness.logging(), harness.ctx.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Settings::default().resync)
    );
}

#[tokio::test]
async fn a_scale_in_waits_until_the_removed_pod_has_drained_its_buffers() {
    let (inventory, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    const STATEFULSET: &str = "/apis/apps/v1/namespaces/sluice-system/statefulsets/main-aggregator";
    // The examples run two aggregator replicas; the admin asks for one.
    let mut logging = serde_json::to_value(&inventory.loggings[0]).unwrap_or_default();
    logging["metadata"]["uid"] = json!("uid--main");
    logging["metadata"]["generation"] = json!(2);
    logging["spec"]["aggregator"]["replicas"] = json!(1);
    harness
        .writers
        .loggings
        .apply_watcher_event(&watcher::Event::Apply(guard(logging)));
    let pod = "main-aggregator-1.main-aggregator-headless.sluice-system.svc".to_owned();
    harness
        .drains
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .insert(
            pod.clone(),
            sluice::bundle::ReloaderStatus {
                draining: true,
                buffered_chunks: Some(3),
                ..Default::default()
            },
        );
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| c.path != STATEFULSET),
        "still two replicas while chunks remain: {:#?}",
        lines(&calls)
    );
    assert_eq!(
        harness.drains.lock().unwrap_or_else(|e| e.into_inner()).1,
        std::slice::from_ref(&pod)
    );
    harness.observe(&calls);
    // Drained: the StatefulSet shrinks by one.
    harness
        .drains
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .insert(
            pod,
            sluice::bundle::ReloaderStatus {
                draining: true,
                buffered_chunks: Some(0),
                ..Default::default()
            },
        );
    let calls = harness.reconcile().await;
    let patch = find(&calls, "PATCH", STATEFULSET);
    assert_eq!(patch.body["spec"]["replicas"], 1);
    harness.observe(&calls);
    // At the desired count nothing is drained any more.
    let before = harness
        .drains
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .1
        .len();
    harness.reconcile().await;
    assert_eq!(
        harness
            .drains
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .len(),
        before
    );
}

// ---------------------------------------------------------------------------------------
// The load benchmark's scenario (e2e/src/bin/sluice-load.rs) at small N, with the real
// resolve, render and build: the write counts per edit are exact.

/// Flow `index` of the load scenario and its Output: an exclude and a label select rule,
/// optionally a filter.
fn load_flow(index: usize, app: &str, filter: Option<&str>, generation: i64) -> [Value; 2] {
    let namespace = format!("load-{}", index % 4);
    let name = format!("flow-{index:03}");
    let filters = match filter {
        Some(value) => json!([{"recordTransformer": {"records": {"load_marker": value}}}]),
        None => json!([]),
    };
    let mut flow = team_object(
        "Flow",
        &namespace,
        &name,
        json!({"match": [{"exclude": {"labels": {"noise": "true"}}},
                         {"select": {"labels": {"app": app}}}],
               "filters": filters, "localOutputRefs": [name]}),
    );
    flow["metadata"]["generation"] = json!(generation);
    [
        team_object("Output", &namespace, &name, json!({"nullOutput": {}})),
        flow,
    ]
}

fn load_harness(flows: usize) -> Harness {
    let mut fixture = Fixture {
        loggings: vec![logging_json(None)],
        namespaces: (0..4)
            .map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("load-{i}")}}))
            .collect(),
        control_namespaces: vec![CONTROL.to_owned()],
        real_cores: true,
        ..Fixture::default()
    };
    for index in 0..flows {
        let [output, flow] = load_flow(index, &format!("app-{index}"), None, 1);
        fixture.outputs.push(output);
        fixture.flows.push(flow);
    }
    Harness::start(fixture)
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_write() && !c.path.contains("/events"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

#[tokio::test]
async fn load_scenario_one_edit_is_one_shard_write_plus_manifest_and_one_status_write() {
    let mut harness = load_harness(40);
    harness.settle().await;
    let status = |index: usize| {
        format!(
            "PATCH /apis/logging.sluice.dev/v1alpha1/namespaces/load-{}/flows/flow-{index:03}/status",
            index % 4
        )
    };
    let secret = |name: &str| format!("PATCH /api/v1/namespaces/{CONTROL}/secrets/{name}");

    // A filter edit lands in the flow's aggregator slot (and the bundle's manifest).
    let [_, edited] = load_flow(17, "app-17", Some("edit-1"), 2);
    let calls = harness.deliver_flow_edit(edited).await;
    let key = ObjectKey::namespaced(Kind::Flow, "load-1", "flow-017");
    let slot = sluice::render::fluentd::config_slot(&key);
    assert_eq!(
        writes(&calls),
        [
            secret(&format!("main-aggregator-config-{slot:02}")),
            secret("main-aggregator-config"),
            status(17),
        ]
    );
    harness.observe(&calls);
    assert_eq!(writes(&harness.reconcile().await), Vec::<String>::new());

    // A select-label edit lands in the flow's slot of the agents' routing table only: the
    // same slot number as its aggregator slot, a few hundred bytes here, never the table.
    let [_, edited] = load_flow(17, "edit-2", Some("edit-1"), 3);
    let calls = harness.deliver_flow_edit(edited).await;
    let routes_slot = format!("main-agent-routes-{slot:02}");
    assert_eq!(writes(&calls), [secret(&routes_slot), status(17)]);
    let written = calls
        .iter()
        .find(|c| c.path.ends_with(&routes_slot))
        .and_then(secret_text)
        .unwrap();
    assert!(written.contains("\"edit-2\""), "{written}");
    assert!(written.len() < 2048, "{} bytes", written.len());
}

/// The inventory copies only the Secrets the TLS planner reads, never the rendered config
/// bundles (a second copy of every flow's text on each reconcile).
#[tokio::test]
async fn config_bundles_are_not_copied_into_the_inventory() {
    let (_, fixture) = served_examples();
    let mut harness = Harness::start(fixture);
    harness.settle().await;
    let owned: Vec<String> = sluice::controller::inventory::owned_secrets(&harness.ctx)
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert!(owned.contains(&"main-ca".to_owned()), "{owned:?}");
    assert!(
        owned
            .iter()
            .all(|n| !n.contains("-config") && !n.contains("-credentials")),
        "{owned:?}"
    );
    assert!(
        harness
            .ctx
            .memory()
            .applied_secrets
            .keys()
            .all(|(_, name)| !name.contains("-config")),
    );
}

// ---------------------------------------------------------------------------------------
// Loggings are isolated from each other (docs/operations.md, "Which Loggings are applied").

const MAIN_CREATED: &str = "2026-01-01T00:00:00Z";

/// The examples (`main` created at [`MAIN_CREATED`]) plus these Loggings and Flows.
fn examples_with(loggings: Vec<Value>, flows: Vec<Value>) -> Harness {
    let (_, mut fixture) = served_examples();
    for logging in &mut fixture.loggings {
        logging["metadata"]["creationTimestamp"] = json!(MAIN_CREATED);
    }
    fixture.loggings.extend(loggings);
    fixture.flows.extend(flows);
    Harness::start(fixture)
}

/// A Logging created a month after `main` that wants what `main` has: every namespace, the
/// shared ClusterOutputs and, for its own TLS, the names of their Secrets.
fn greedy_logging(name: &str, control_namespace: &str) -> Value {
    json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": "Logging",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1,
                     "resourceVersion": "11", "creationTimestamp": "2026-02-01T00:00:00Z"},
        "spec": {
            "controlNamespace": control_namespace,
            "defaultFlow": {"globalOutputRefs": ["security-siem", "shared-loki"]},
            "tls": {"mode": "Existing",
                    "existing": {"serverSecretName": "siem-hec", "clientSecretName": "loki-credentials"}}
        }
    })
}

/// The status writes of Flows, Outputs and the cluster kinds among `calls`, by path.
fn object_statuses(calls: &[Call]) -> BTreeMap<String, Value> {
    calls
        .iter()
        .filter(|c| c.path.ends_with("/status") && !c.path.contains("/loggings/"))
        .map(|c| (c.path.clone(), c.body.clone()))
        .collect()
}

/// A refused Logging (a control namespace the operator does not allow; a control namespace
/// an older Logging holds, under a name that sorts first) changes nothing `main`'s reconcile
/// sends: the same requests, the same object statuses, no Secret read for it. Its own
/// reconcile writes its status and one Warning Event, and nothing else.
#[tokio::test]
async fn a_refused_logging_changes_nothing_the_working_one_sends() {
    let alone = examples_with(Vec::new(), Vec::new())
        .reconcile_named("main")
        .await;
    for (name, namespace, reason) in [
        ("iw-other", "iw-norb", "ControlNamespaceNotAllowed"),
        ("aaa-newcomer", "sluice-system", "ControlNamespaceInUse"),
    ] {
        let mut harness = examples_with(vec![greedy_logging(name, namespace)], Vec::new());
        let calls = harness.reconcile_named("main").await;
        assert_eq!(lines(&calls), lines(&alone), "{name}");
        assert_eq!(object_statuses(&calls), object_statuses(&alone), "{name}");
        harness.observe(&calls);

        let refused = harness.reconcile_named(name).await;
        let mut sent = lines(&refused);
        sent.sort();
        assert_eq!(
            sent,
            [
                format!(
                    "PATCH /apis/logging.sluice.dev/v1alpha1/loggings/{name}/status?{APPLY_QUERY}"
                ),
                "POST /apis/events.k8s.io/v1/namespaces/default/events?".to_owned(),
            ],
            "{name}"
        );
        let path = format!("/apis/logging.sluice.dev/v1alpha1/loggings/{name}/status");
        let status = &find(&refused, "PATCH", &path).body["status"];
        assert_eq!(condition(status, "Degraded")["status"], "True", "{status}");
        assert_eq!(condition(status, "Degraded")["reason"], reason, "{status}");
        assert_eq!(condition(status, "Ready")["status"], "False", "{status}");
        let event = find(
            &refused,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
        );
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], reason);
        assert_eq!(event.body["regarding"]["name"], name);
    }
}

/// A Flow whose `loggingRef` names a refused Logging runs nowhere: Ready False, and it says
/// why, without being Degraded (the Logging is).
#[tokio::test]
async fn a_flow_of_a_refused_logging_is_not_ready() {
    let flow = team_object(
        "Flow",
        "payments",
        "api-copy",
        json!({"loggingRef": "iw-other", "localOutputRefs": ["payments-es"]}),
    );
    let harness = examples_with(vec![greedy_logging("iw-other", "iw-norb")], vec![flow]);
    let calls = harness.reconcile_named("main").await;
    let status = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/payments/flows/api-copy/status",
    )
    .body["status"];
    assert_eq!(condition(status, "Ready")["status"], "False", "{status}");
    assert_eq!(
        condition(status, "Ready")["reason"],
        "LoggingRefused",
        "{status}"
    );
    assert_eq!(condition(status, "Degraded")["status"], "False", "{status}");
    // The Output it names is `main`'s, and only `main` is said to render it.
    let output = &find(
        &calls,
        "PATCH",
        "/apis/logging.sluice.dev/v1alpha1/namespaces/payments/outputs/payments-es/status",
    )
    .body["status"];
    let message = condition(output, "Ready")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("Logging main") && !message.contains("iw-other"),
        "{output}"
    );
}

/// TLS disabled on purpose is a warning: the Logging is not Degraded (Argo CD keeps it
/// Healthy), the `Warning` condition and one Warning Event say so.
#[tokio::test]
async fn tls_disabled_is_a_warning_not_degraded() {
    let (_, mut fixture) = served_examples();
    fixture.loggings[0]["spec"]["tls"] = json!({"mode": "Disabled"});
    let harness = Harness::start(fixture);
    let calls = harness.reconcile().await;
    let status = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_eq!(condition(status, "Degraded")["status"], "False", "{status}");
    assert_eq!(condition(status, "Warning")["status"], "True", "{status}");
    assert_eq!(
        condition(status, "Warning")["reason"],
        "TlsDisabled",
        "{status}"
    );
    assert_eq!(
        condition(status, "CertificatesReady")["reason"],
        "TlsDisabled"
    );
    let warnings: Vec<&Value> = calls
        .iter()
        .filter(|c| c.method == "POST" && c.body["type"] == "Warning")
        .map(|c| &c.body["reason"])
        .collect();
    assert_eq!(warnings, [&json!("TlsDisabled")]);
    // Applied all the same.
    find(&calls, "PATCH", DS_PATH);
}

// A revision is one unit across components: agents get a route only once every aggregator
// replica dispatches it, and status says what the data plane runs.

/// A Logging with two aggregator replicas, one Flow and its Output in team-a.
/// Team a's Flow `app`, sending to its Output `store`.
fn team_a_app() -> Value {
    team_object(
        "Flow",
        "team-a",
        "app",
        json!({"localOutputRefs": ["store"]}),
    )
}

fn replicas_harness() -> Harness {
    let mut logging = logging_json(None);
    logging["spec"]["aggregator"] = json!({"replicas": 2});
    Harness::start(Fixture {
        loggings: vec![logging],
        flows: vec![team_a_app()],
        outputs: vec![team_object(
            "Output",
            "team-a",
            "store",
            json!({"nullOutput": {}}),
        )],
        namespaces: vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
        ],
        control_namespaces: vec![CONTROL.to_owned()],
        real_cores: true,
        ..Fixture::default()
    })
}

/// The route of a Flow of team-a.
fn team_a_route(name: &str) -> String {
    let key = ObjectKey::namespaced(Kind::Flow, "team-a", name);
    sluice::render::edge::flow_route(&sluice::render::fluentd::flow_label(&key)).to_owned()
}

/// The routes in the routing table Secret the caches hold.
fn published_routes(harness: &Harness) -> Vec<String> {
    use base64::Engine;
    let secret = harness
        .ctx
        .stores
        .children_of(ChildKind::Secret)
        .into_iter()
        .find(|s| s.name_any() == names().agent_routes_secret())
        .unwrap_or_else(|| panic!("the routing table is not cached"));
    let encoded = secret.data["data"][sluice::layout::ROUTES_LIST_FILE]
        .as_str()
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn routes_path() -> String {
    format!(
        "/api/v1/namespaces/{CONTROL}/secrets/{}",
        names().agent_routes_secret()
    )
}

fn flow_status_path(name: &str) -> String {
    format!("/apis/logging.sluice.dev/v1alpha1/namespaces/team-a/flows/{name}/status")
}

/// The Ready condition these calls wrote for a Flow of team-a, if they wrote its status.
fn written_ready(calls: &[Call], name: &str) -> Option<Value> {
    let path = flow_status_path(name);
    calls
        .iter()
        .rev()
        .find(|c| c.method == "PATCH" && c.path == path)
        .map(|c| condition(&c.body["status"], "Ready").clone())
}

/// The Logging's first revision, with both aggregator replicas and the agents running it.
async fn settled_on_the_first_revision(harness: &mut Harness) -> String {
    harness.settle().await;
    let aggregator = cached_revision(harness, &names().aggregator_config_secret());
    let agent = cached_revision(harness, &names().agent_config_secret());
    harness.reloaders_answer(
        "aggregator",
        vec![running(&aggregator), running(&aggregator)],
    );
    harness.reloaders_answer("agent", vec![running(&agent)]);
    harness.settle().await;
    aggregator
}

#[tokio::test]
async fn the_first_revision_routes_at_once_and_is_ready_once_every_replica_runs_it() {
    let mut harness = replicas_harness();
    // Created: the routing table holds every route (no aggregator runs an older revision),
    // the flow is in the configuration but not running yet.
    let calls = harness.reconcile().await;
    assert!(
        applied_agent_routes(&calls).is_some_and(|t| t.contains(&team_a_route("app"))),
        "{:#?}",
        lines(&calls)
    );
    let ready = written_ready(&calls, "app").unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "Pending", "{ready}");
    harness.observe(&calls);
    harness.settle().await;
    let first = cached_revision(&harness, &names().aggregator_config_secret());

    // One replica runs it: promoted (accepted Secrets exist), still not Ready.
    harness.reloaders_answer("aggregator", vec![running(&first), running("an-older-one")]);
    let calls = harness.reconcile().await;
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/secrets/main-aggregator-accepted")),
        "{:#?}",
        lines(&calls)
    );
    assert!(
        written_ready(&calls, "app").is_none(),
        "{:#?}",
        lines(&calls)
    );
    harness.observe(&calls);

    // Both run it: Ready, reason Running.
    harness.reloaders_answer("aggregator", vec![running(&first), running(&first)]);
    let calls = harness.reconcile().await;
    let ready = written_ready(&calls, "app").unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(ready["status"], "True", "{ready}");
    assert_eq!(ready["reason"], "Running", "{ready}");
    let output = calls
        .iter()
        .find(|c| c.path.ends_with("/outputs/store/status"))
        .unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(
        condition(&output.body["status"], "Ready")["reason"],
        "Running"
    );
    harness.observe(&calls);
    // A new operator process trusts the stored statuses: nothing flips back.
    harness.restart();
    harness.reloaders_answer("aggregator", vec![]);
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| !is_object_status(c)),
        "{:#?}",
        lines(&calls)
    );
}

#[tokio::test]
async fn a_new_route_reaches_the_agents_only_once_every_aggregator_replica_and_the_accepted_revision_dispatch_it()
 {
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let route = team_a_route("audit");
    assert!(!published_routes(&harness).contains(&route));

    // A new Flow: the aggregator's candidate has it at once, the agents' table does not.
    let calls = harness
        .deliver_flow_edit(team_object(
            "Flow",
            "team-a",
            "audit",
            json!({"localOutputRefs": ["store"]}),
        ))
        .await;
    let config =
        applied_aggregator_config(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(
        config.contains(&format!("<match sluice.{route}>")),
        "{config}"
    );
    assert!(
        applied_agent_routes(&calls).is_none(),
        "neither the routing table's index nor a slot is written: {:#?}",
        lines(&calls)
    );
    assert_eq!(
        written_ready(&calls, "audit").map(|r| r["reason"].clone()),
        Some(json!("Pending"))
    );
    harness.observe(&calls);
    let second = cached_revision(&harness, &names().aggregator_config_secret());
    assert_ne!(second, first);

    // The replicas' kubelets sync at different moments: one runs the new revision (which is
    // promoted), the other the old one. Still nothing for the agents.
    harness.reloaders_answer("aggregator", vec![running(&second), running(&first)]);
    let calls = harness.reconcile().await;
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/secrets/main-aggregator-accepted")),
        "promoted: {:#?}",
        lines(&calls)
    );
    assert!(calls.iter().all(|c| c.path != routes_path()));
    harness.observe(&calls);
    let calls = harness.reconcile().await;
    assert!(calls.iter().all(|c| c.path != routes_path()));
    assert!(published_routes(&harness).iter().all(|r| *r != route));

    // A replica that answers nothing, or runs a revision the operator does not know, holds
    // the route back too.
    harness.reloaders_answer("aggregator", vec![running(&second)]);
    assert!(
        harness
            .reconcile()
            .await
            .iter()
            .all(|c| c.path != routes_path())
    );
    harness.reloaders_answer("aggregator", vec![running(&second), running("unknown")]);
    assert!(
        harness
            .reconcile()
            .await
            .iter()
            .all(|c| c.path != routes_path())
    );

    // Every replica dispatches it, and so does the accepted revision: the agents get it, and
    // the flow is Ready in the same reconcile.
    harness.reloaders_answer("aggregator", vec![running(&second), running(&second)]);
    let calls = harness.reconcile().await;
    let table = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(table.contains(&route), "{table}");
    assert_eq!(
        written_ready(&calls, "audit").map(|r| r["reason"].clone()),
        Some(json!("Running"))
    );
    harness.observe(&calls);
    assert!(published_routes(&harness).contains(&route));
}

#[tokio::test]
async fn a_route_of_a_revision_the_aggregator_rejects_never_reaches_the_agents() {
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let route = team_a_route("audit");
    let calls = harness
        .deliver_flow_edit(team_object(
            "Flow",
            "team-a",
            "audit",
            json!({"localOutputRefs": ["store"]}),
        ))
        .await;
    harness.observe(&calls);
    let rejected = cached_revision(&harness, &names().aggregator_config_secret());
    // The binary's error names no Sluice id.
    let refused = sluice::bundle::ReloaderStatus {
        running: Some(first.clone()),
        accepted: vec![first.clone()],
        rejected: Some(sluice::bundle::Rejection {
            revision: rejected.clone(),
            error: "[error]: config error error_class=Fluent::ConfigError error=\"something somewhere\"".to_owned(),
        }),
        ..Default::default()
    };
    harness.reloaders_answer("aggregator", vec![refused.clone(), refused]);
    let calls = harness.reconcile().await;
    assert!(calls.iter().all(|c| c.path != routes_path()));
    assert!(calls.iter().all(|c| !c.path.contains("-accepted")));
    let logging = &find(&calls, "PATCH", LOGGING_STATUS).body["status"];
    assert_eq!(condition(logging, "Degraded")["reason"], "ConfigRejected");
    harness.observe(&calls);

    // What it added is blamed, left out, and not Ready; the rest keeps running.
    let calls = harness.reconcile().await;
    let ready = written_ready(&calls, "audit").unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "ConfigRejected", "{ready}");
    assert!(written_ready(&calls, "app").is_none(), "app stays Running");
    assert!(calls.iter().all(|c| c.path != routes_path()));
    harness.observe(&calls);
    // Back to the revision that runs: settled, and the agents never saw the route.
    assert_eq!(
        cached_revision(&harness, &names().aggregator_config_secret()),
        first
    );
    harness.settle().await;
    assert!(published_routes(&harness).iter().all(|r| *r != route));
}

#[tokio::test]
async fn a_removed_route_leaves_the_agents_with_the_candidate_that_drops_it() {
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let route = team_a_route("app");
    assert!(published_routes(&harness).contains(&route));
    // Removing the flow: the agents stop tagging for it in the same reconcile, whatever the
    // replicas run (records of a removed flow have nowhere to go).
    let calls = harness.deliver_flow_deletion(team_a_app()).await;
    let table = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(!table.contains(&route), "{table}");
    assert!(applied_aggregator_config(&calls).is_some());
    harness.observe(&calls);
    assert_ne!(
        cached_revision(&harness, &names().aggregator_config_secret()),
        first
    );
}

/// Flows keep arriving faster than the pods judge a revision: each reconcile writes a new
/// candidate while the pods accept the one before. The revision they accepted is promoted
/// (its own content, not the newest), its new routes reach the agents and its flows run;
/// without that nothing new would run until the changes stopped. A revision older than the
/// accepted one is never promoted again.
#[tokio::test]
async fn a_revision_the_pods_accepted_after_a_newer_one_was_written_is_promoted_and_its_flows_run()
{
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let store = json!({"localOutputRefs": ["store"]});
    let calls = harness
        .deliver_flow_edit(team_object("Flow", "team-a", "audit", store.clone()))
        .await;
    harness.observe(&calls);
    let second = cached_revision(&harness, &names().aggregator_config_secret());
    // Another flow arrives before any pod has looked at the second revision.
    let calls = harness
        .deliver_flow_edit(team_object("Flow", "team-a", "billing", store))
        .await;
    harness.observe(&calls);
    let third = cached_revision(&harness, &names().aggregator_config_secret());
    assert!(first != second && second != third && first != third);

    // Both replicas accept and run the second: it is promoted, with its own content.
    harness.reloaders_answer("aggregator", vec![running(&second), running(&second)]);
    let calls = harness.reconcile().await;
    let promoted = find(
        &calls,
        "PATCH",
        &format!("/api/v1/namespaces/{CONTROL}/secrets/main-aggregator-accepted"),
    );
    assert_eq!(
        promoted.body["metadata"]["labels"]["logging.sluice.dev/config-set"],
        "accepted"
    );
    harness.observe(&calls);
    assert_eq!(
        cached_revision(&harness, "main-aggregator-accepted"),
        second
    );
    assert_eq!(
        cached_revision(&harness, &names().aggregator_config_secret()),
        third,
        "the newest candidate stays as it is"
    );

    // The agents get the route the accepted and running revision dispatches, not the newer
    // one, and that flow runs.
    let calls = harness.reconcile().await;
    let table = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(table.contains(&team_a_route("audit")), "{table}");
    assert!(!table.contains(&team_a_route("billing")), "{table}");
    assert_eq!(
        written_ready(&calls, "audit").map(|r| r["reason"].clone()),
        Some(json!("Running"))
    );
    assert_ne!(
        written_ready(&calls, "billing").map(|r| r["reason"].clone()),
        Some(json!("Running"))
    );
    harness.observe(&calls);

    // A replica falling back to the first revision never brings it back.
    harness.reloaders_answer("aggregator", vec![running(&first), running(&second)]);
    let calls = harness.reconcile().await;
    assert!(
        calls.iter().all(|c| !c.path.contains("-accepted")),
        "{:#?}",
        lines(&calls)
    );
}

/// A Flow deleted and added back before the pods caught up (seen on real fluentd): the pods
/// run the first revision, which has its route, but have already seen the one without it and
/// load that next. The route waits until the revision they load next has it too.
#[tokio::test]
async fn a_flow_added_back_is_routed_only_once_the_revision_the_pods_load_next_has_it() {
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let route = team_a_route("app");
    let app = team_a_app();
    let calls = harness.deliver_flow_deletion(app.clone()).await;
    harness.observe(&calls);
    let without = cached_revision(&harness, &names().aggregator_config_secret());
    assert_ne!(without, first);
    assert!(!published_routes(&harness).contains(&route));

    // Both pods still run the first revision but have seen the one without the flow.
    let seen = |next: &str| sluice::bundle::ReloaderStatus {
        running: Some(first.clone()),
        candidate: Some(next.to_owned()),
        accepted: vec![first.clone()],
        ..Default::default()
    };
    harness.reloaders_answer("aggregator", vec![seen(&without), seen(&without)]);
    let mut back = app;
    back["metadata"]["generation"] = json!(2);
    let calls = harness.deliver_flow_edit(back).await;
    assert!(
        applied_agent_routes(&calls).is_none_or(|table| !table.contains(&route)),
        "the pods load {without} next, which drops the route: {:#?}",
        lines(&calls)
    );
    harness.observe(&calls);
    let calls = harness.reconcile().await;
    assert!(
        applied_agent_routes(&calls).is_none_or(|table| !table.contains(&route)),
        "{:#?}",
        lines(&calls)
    );
    harness.observe(&calls);

    // The revision they load next has it again: the route goes out.
    let current = cached_revision(&harness, &names().aggregator_config_secret());
    harness.reloaders_answer("aggregator", vec![seen(&current), seen(&current)]);
    let calls = harness.reconcile().await;
    let table = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(table.contains(&route), "{table}");
}

/// An edit that reaches the caches while a reconcile applies the candidate built before it
/// (seen on real fluentd: a Flow was Ready/Running at its new generation ~9.5 s before any pod
/// ran it). The candidate is recorded with the versions it was built from, so the pods
/// running it do not make the edit Running.
#[tokio::test]
async fn an_edit_arriving_during_the_apply_is_not_running_when_the_candidate_built_before_it_runs()
{
    let mut harness = replicas_harness();
    settled_on_the_first_revision(&mut harness).await;
    let mut edited = team_object(
        "Flow",
        "team-a",
        "app",
        json!({"filters": [{"grep": {"regexp": [{"key": "log", "pattern": "edited"}]}}],
               "localOutputRefs": ["store"]}),
    );
    edited["metadata"]["generation"] = json!(2);
    let other = team_object(
        "Flow",
        "team-a",
        "other",
        json!({"localOutputRefs": ["store"]}),
    );
    let calls = harness
        .deliver_flow_edit_while_applying(other, edited)
        .await;
    harness.observe(&calls);
    let built_before_the_edit = cached_revision(&harness, &names().aggregator_config_secret());

    // Both pods run the candidate built before the edit: "other" runs, the edit does not.
    harness.reloaders_answer(
        "aggregator",
        vec![
            running(&built_before_the_edit),
            running(&built_before_the_edit),
        ],
    );
    // The agents get "other"'s route once the pods dispatch it; the pass after that sees it.
    for _ in 0..2 {
        let calls = harness.reconcile().await;
        harness.observe(&calls);
    }
    assert_eq!(stored_ready(&harness, "other")["reason"], "Running");
    let app = stored_ready(&harness, "app");
    assert_eq!(app["observedGeneration"], 2, "{app}");
    assert_eq!(app["reason"], "Pending", "{app}");
    assert_eq!(app["status"], "False", "{app}");
}

/// The Ready condition the caches hold for team-a's Flow `name`.
fn stored_ready(harness: &Harness, name: &str) -> Value {
    let flow = harness
        .ctx
        .stores
        .flows
        .state()
        .into_iter()
        .find(|flow| flow.name_any() == name)
        .unwrap_or_else(|| panic!("no Flow {name}"));
    let flow = flow.0.as_ref().unwrap_or_else(|e| panic!("{e:?}"));
    let status = serde_json::to_value(&flow.status).unwrap_or_default();
    condition(&status, "Ready").clone()
}

/// Another Logging's reconcile writes the statuses of every object, with the verdict of the
/// Logging using each. A Flow created since its Logging's last candidate is in that Logging's
/// configuration only from its next candidate on: Pending, never Ready (seen on real parts: a
/// new Flow showed `Ready=True Accepted` for ~0.4 s before any pod ran it).
#[tokio::test]
async fn a_new_flow_is_pending_when_another_loggings_reconcile_sees_it_first() {
    let mut logging = logging_json(None);
    logging["spec"]["aggregator"] = json!({"replicas": 2});
    let other = json!({
        "apiVersion": "logging.sluice.dev/v1alpha1",
        "kind": "Logging",
        "metadata": {"name": "other", "uid": "uid-other", "generation": 1, "resourceVersion": "11"},
        "spec": {"controlNamespace": "other-system", "watchNamespaces": ["team-b"]}
    });
    let namespace =
        |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let mut harness = Harness::start(Fixture {
        loggings: vec![logging, other],
        flows: vec![team_a_app()],
        outputs: vec![team_object(
            "Output",
            "team-a",
            "store",
            json!({"nullOutput": {}}),
        )],
        namespaces: vec![namespace("team-a"), namespace("team-b")],
        control_namespaces: vec![CONTROL.to_owned(), "other-system".to_owned()],
        real_cores: true,
        ..Fixture::default()
    });
    settled_on_the_first_revision(&mut harness).await;
    let created = team_object(
        "Flow",
        "team-a",
        "created",
        json!({"localOutputRefs": ["store"]}),
    );
    harness
        .writers
        .flows
        .apply_watcher_event(&watcher::Event::Apply(guard(created)));
    let calls = harness.reconcile_named("other").await;
    let ready = written_ready(&calls, "created").unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "Pending", "{ready}");
}

/// Settles on the first revision, then delivers team-a's Flow `other` and reconciles; Flow
/// `created` arrives while that reconcile applies.
async fn flow_created_while_applying(harness: &mut Harness) -> Vec<Call> {
    settled_on_the_first_revision(harness).await;
    let flow = |name: &str| {
        team_object(
            "Flow",
            "team-a",
            name,
            json!({"localOutputRefs": ["store"]}),
        )
    };
    harness
        .deliver_flow_edit_while_applying(flow("other"), flow("created"))
        .await
}

/// A Flow created while a reconcile applies the configuration built without it gets its
/// status from the next reconcile, which resolved it; this one's status pass does not call
/// it `Unused` (seen on real parts for ~0.4 s).
#[tokio::test]
async fn a_flow_created_during_the_apply_is_not_called_unused() {
    let mut harness = replicas_harness();
    let calls = flow_created_while_applying(&mut harness).await;
    assert_eq!(
        written_ready(&calls, "created"),
        None,
        "{:#?}",
        lines(&calls)
    );
    harness.observe(&calls);
    let calls = harness.reconcile().await;
    let ready = written_ready(&calls, "created").unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert_eq!(ready["reason"], "Pending", "{ready}");
}

/// A change arriving while a reconcile applies does not wait for that reconcile's rollout and
/// statuses (at 10,000 flows on a real API server they kept an edit waiting up to half a
/// second): the reconcile ends after its bookkeeping, and the next one, which starts at once,
/// asks the pods and writes every status from newer caches.
#[tokio::test]
async fn a_change_arriving_during_the_apply_does_not_wait_for_the_rollout_and_statuses() {
    let mut harness = replicas_harness();
    let calls = flow_created_while_applying(&mut harness).await;
    let statuses: Vec<&Call> = calls
        .iter()
        .filter(|call| call.path.ends_with("/status"))
        .collect();
    assert!(statuses.is_empty(), "{statuses:#?}");
    harness.observe(&calls);

    let calls = harness.reconcile().await;
    for flow in ["other", "created"] {
        let ready = written_ready(&calls, flow).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
        assert_eq!(ready["reason"], "Pending", "{flow}: {ready}");
    }
}

/// A Flow deleted and added back while the revision without it had not reached the pods yet
/// (seen on real fluentd: both pods reported the first revision as running and next, loaded
/// the one without the Flow a second later, and 100 records went to the error output). The
/// revision published again has the first one's name; its number tells them apart, and the
/// route waits until the pods have seen that publication.
#[tokio::test]
async fn a_flow_added_back_before_its_deletion_reached_the_pods_waits_for_them() {
    let mut harness = replicas_harness();
    let first = settled_on_the_first_revision(&mut harness).await;
    let config = names().aggregator_config_secret();
    let first_number = cached_manifest(&harness, &config).sequence;
    assert!(first_number > 0);
    let route = team_a_route("app");
    let app = team_a_app();
    let calls = harness.deliver_flow_deletion(app.clone()).await;
    harness.observe(&calls);
    let without = cached_manifest(&harness, &config);
    assert_ne!(without.revision, first);
    assert_eq!(without.sequence, first_number + 1);
    assert!(!published_routes(&harness).contains(&route));

    // The deletion has not reached the pods: they run and report the first publication.
    let seen = |number: u64| sluice::bundle::ReloaderStatus {
        running: Some(first.clone()),
        candidate: Some(first.clone()),
        candidate_sequence: Some(number),
        accepted: vec![first.clone()],
        ..Default::default()
    };
    harness.reloaders_answer("aggregator", vec![seen(first_number), seen(first_number)]);
    let calls = harness.deliver_flow_edit(app).await;
    assert!(
        applied_agent_routes(&calls).is_none_or(|table| !table.contains(&route)),
        "the pods may still load {}, which drops the route: {:#?}",
        without.revision,
        lines(&calls)
    );
    harness.observe(&calls);
    let again = cached_manifest(&harness, &config);
    assert_eq!(again.revision, first);
    assert_eq!(again.sequence, first_number + 2);

    // They have seen the publication after the deletion: the route goes out.
    harness.reloaders_answer(
        "aggregator",
        vec![seen(again.sequence), seen(again.sequence)],
    );
    let calls = harness.reconcile().await;
    let table = applied_agent_routes(&calls).unwrap_or_else(|| panic!("{:#?}", lines(&calls)));
    assert!(table.contains(&route), "{table}");
}
