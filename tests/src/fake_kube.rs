//! A fake Kubernetes API server for `chaos k8s`: no API server can run on these machines. It
//! keeps namespaces, pods and ConfigMaps as JSON, answers the calls chaos makes (get, list by
//! label, create, JSON merge patch, delete with the garbage collector's cascade to owned pods,
//! pod logs, SelfSubjectReview) over plain HTTP with a bearer token, and records each request.
//! What kubelet would do with the pods it schedules is the test's to do (see
//! [`FakeApi::pods`] and [`FakeApi::set_status`]).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

/// The token the kubeconfig carries, and the user the server says it is.
const TOKEN: &str = "alice-token";
pub const USER: &str = "alice@example.com";

#[derive(Default)]
struct State {
    /// (plural, namespace, name) → object; namespaces under ("namespaces", "", name).
    objects: BTreeMap<(String, String, String), Value>,
    logs: BTreeMap<(String, String), String>,
    requests: Vec<String>,
    uids: u64,
}

pub struct FakeApi {
    state: Arc<Mutex<State>>,
    /// A kubeconfig naming this server, for KUBECONFIG.
    pub kubeconfig: PathBuf,
}

impl FakeApi {
    /// Listens on a free port of 127.0.0.1 and writes a kubeconfig for it into `dir`.
    pub fn start(dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API server");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        std::fs::create_dir_all(dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: alice\nusers:\n- name: alice\n  user:\n    token: {TOKEN}\n"
            ),
        )
        .unwrap();
        FakeApi { state, kubeconfig }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn add_namespace(&self, name: &str, annotations: Value) {
        let object = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "annotations": annotations },
        });
        self.lock().insert("namespaces", "", object);
    }

    /// A pod that kubelet runs on `node`, with `phase`.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
        labels: Value,
        phase: &str,
    ) {
        let object = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "namespace": namespace, "uid": uid, "labels": labels },
            "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "busybox" }] },
            "status": { "phase": phase },
        });
        self.lock()
            .objects
            .insert(("pods".into(), namespace.into(), name.into()), object);
    }

    /// Merges `patch` into pod `namespace/name` (`{"spec": {"hostNetwork": true}}`).
    pub fn merge_pod(&self, namespace: &str, name: &str, patch: Value) {
        let mut state = self.lock();
        let pod = state
            .objects
            .get_mut(&("pods".into(), namespace.into(), name.into()))
            .expect("a pod of the fake");
        merge(pod, &patch);
    }

    /// The pods of `namespace`, as the server holds them.
    pub fn pods(&self, namespace: &str) -> Vec<Value> {
        self.list("pods", namespace)
    }

    pub fn config_maps(&self, namespace: &str) -> Vec<Value> {
        self.list("configmaps", namespace)
    }

    fn list(&self, plural: &str, namespace: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && ns == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// What kubelet reports of a pod: its phase, the reason, and its container's output.
    pub fn set_status(
        &self,
        namespace: &str,
        name: &str,
        phase: &str,
        reason: Option<&str>,
        log: &str,
    ) {
        let mut state = self.lock();
        if let Some(pod) = state
            .objects
            .get_mut(&("pods".into(), namespace.into(), name.into()))
        {
            pod["status"] = json!({ "phase": phase, "reason": reason });
        }
        state
            .logs
            .insert((namespace.into(), name.into()), log.into());
    }

    /// Every request so far: `METHOD PATH`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Asserts that deploy/kubernetes/rbac.yaml grants every request made so far: its
    /// ClusterRole's rules anywhere, its Role's in the Role's namespace (SelfSubjectReview is
    /// every authenticated user's).
    pub fn assert_granted_by_rbac(&self) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/rbac.yaml");
        let text = std::fs::read_to_string(&path).expect("read rbac.yaml");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rbac.yaml parses");
        // (namespace the rule holds in, or none: everywhere; resource; verb)
        let mut granted: Vec<(Option<String>, String, String)> = Vec::new();
        for document in &documents {
            let scope = match document["kind"].as_str() {
                Some("ClusterRole") => None,
                Some("Role") => document["metadata"]["namespace"]
                    .as_str()
                    .map(str::to_owned),
                _ => continue,
            };
            for rule in document["rules"].as_array().into_iter().flatten() {
                for resource in rule["resources"].as_array().into_iter().flatten() {
                    for verb in rule["verbs"].as_array().into_iter().flatten() {
                        granted.push((
                            scope.clone(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
        for request in self.requests() {
            let (method, target) = request.split_once(' ').unwrap();
            let path = target.split('?').next().unwrap();
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let (namespace, resource, verb) = match (method, parts.as_slice()) {
                ("POST", ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"]) => {
                    continue;
                }
                ("GET", ["api", "v1", "namespaces", _]) => (None, "namespaces".to_owned(), "get"),
                ("GET", ["api", "v1", "namespaces", ns, plural]) => {
                    (Some(*ns), (*plural).to_owned(), "list")
                }
                ("GET", ["api", "v1", "namespaces", ns, plural, _, sub]) => {
                    (Some(*ns), format!("{plural}/{sub}"), "get")
                }
                ("GET", ["api", "v1", "namespaces", ns, plural, _]) => {
                    (Some(*ns), (*plural).to_owned(), "get")
                }
                ("POST", ["api", "v1", "namespaces", ns, plural]) => {
                    (Some(*ns), (*plural).to_owned(), "create")
                }
                ("PATCH", ["api", "v1", "namespaces", ns, plural, _]) => {
                    (Some(*ns), (*plural).to_owned(), "patch")
                }
                ("DELETE", ["api", "v1", "namespaces", ns, plural, _]) => {
                    (Some(*ns), (*plural).to_owned(), "delete")
                }
                _ => panic!("a request the RBAC check does not know: {request}"),
            };
            assert!(
                granted.iter().any(|(scope, r, v)| {
                    scope.as_deref().is_none_or(|s| Some(s) == namespace)
                        && *r == resource
                        && v == verb
                }),
                "rbac.yaml does not grant {request} ({verb} {resource} in {namespace:?})"
            );
        }
    }
}

impl State {
    fn insert(&mut self, plural: &str, namespace: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        self.objects
            .insert((plural.into(), namespace.into(), name), object);
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().expect("clone a TCP stream"));
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or("").to_owned(),
        );
        let (mut length, mut token, mut request_type) = (0usize, String::new(), String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (key, value) = header.split_once(':').unwrap_or((header, ""));
            match key.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => token = value.trim().trim_start_matches("Bearer ").to_owned(),
                "content-type" => request_type = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, content_type, text) = if token == TOKEN {
            let mut state = state.lock().unwrap();
            state.requests.push(format!("{method} {target}"));
            // Only a JSON merge patch is applied as one.
            if method == "PATCH" && request_type != "application/merge-patch+json" {
                let message = format!("the fake applies merge patches only, not {request_type}");
                (
                    415,
                    "application/json",
                    status_json(415, "UnsupportedMediaType", &message),
                )
            } else {
                handle(&mut state, &method, &target, body)
            }
        } else {
            (
                401,
                "application/json",
                status_json(401, "Unauthorized", "no valid token"),
            )
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string()
}

fn handle(
    state: &mut State,
    method: &str,
    target: &str,
    body: Value,
) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parameter = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
    };
    let selector = parameter("labelSelector");
    // The one field selector chaos sends: a pod by its name.
    let name_wanted = parameter("fieldSelector").map(|fields| {
        fields
            .strip_prefix("metadata.name=")
            .unwrap_or_else(|| panic!("a field selector the fake does not know: {fields}"))
            .to_owned()
    });
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |object: &Value| (200, "application/json", object.to_string());
    let not_found = |what: &str| {
        (
            404,
            "application/json",
            status_json(404, "NotFound", &format!("{what} not found")),
        )
    };
    match (method, parts.as_slice()) {
        ("POST", ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"]) => ok(&json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": { "userInfo": { "username": USER } },
        })),
        ("GET", ["api", "v1", "namespaces", name]) => {
            match state
                .objects
                .get(&("namespaces".into(), String::new(), (*name).into()))
            {
                Some(object) => ok(object),
                None => not_found(&format!("namespace {name}")),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            match state.logs.get(&((*ns).into(), (*name).into())) {
                Some(log) => (200, "text/plain", log.clone()),
                None => (200, "text/plain", String::new()),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, plural]) => {
            let items: Vec<&Value> = state
                .objects
                .iter()
                .filter(|((p, n, _), o)| p == plural && n == ns && matches(o, selector.as_deref()))
                .filter(|((_, _, name), _)| {
                    name_wanted.as_ref().is_none_or(|wanted| wanted == name)
                })
                .map(|(_, o)| o)
                .collect();
            let kind = if *plural == "pods" {
                "PodList"
            } else {
                "ConfigMapList"
            };
            ok(&json!({ "apiVersion": "v1", "kind": kind, "metadata": {}, "items": items }))
        }
        ("GET", ["api", "v1", "namespaces", ns, plural, name]) => {
            match state
                .objects
                .get(&((*plural).into(), (*ns).into(), (*name).into()))
            {
                Some(object) => ok(object),
                None => not_found(&format!("{plural} {ns}/{name}")),
            }
        }
        ("POST", ["api", "v1", "namespaces", ns, plural]) => {
            let mut object = body;
            let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let key = ((*plural).to_owned(), (*ns).to_owned(), name.clone());
            if state.objects.contains_key(&key) {
                return (
                    409,
                    "application/json",
                    status_json(409, "AlreadyExists", &format!("{name} exists")),
                );
            }
            state.uids += 1;
            object["metadata"]["uid"] =
                json!(format!("00000000-0000-4000-8000-{:012}", state.uids));
            object["metadata"]["namespace"] = json!(ns);
            object["metadata"]["creationTimestamp"] = json!(rfc3339_now());
            if *plural == "pods" {
                object["status"] = json!({ "phase": "Pending" });
            }
            state.objects.insert(key, object.clone());
            (201, "application/json", object.to_string())
        }
        ("PATCH", ["api", "v1", "namespaces", ns, plural, name]) => {
            match state
                .objects
                .get_mut(&((*plural).into(), (*ns).into(), (*name).into()))
            {
                Some(object) => {
                    merge(object, &body);
                    ok(object)
                }
                None => not_found(&format!("{plural} {ns}/{name}")),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", ns, plural, name]) => {
            let Some(object) =
                state
                    .objects
                    .remove(&((*plural).into(), (*ns).into(), (*name).into()))
            else {
                return not_found(&format!("{plural} {ns}/{name}"));
            };
            // The garbage collector: what the deleted object owned goes with it.
            let uid = object["metadata"]["uid"].clone();
            state.objects.retain(|_, o| {
                !o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|r| r["uid"] == uid))
            });
            ok(&object)
        }
        _ => (
            404,
            "application/json",
            status_json(404, "NotFound", &format!("{method} {path}")),
        ),
    }
}

/// Whether `object`'s labels meet `selector` (equality, inequality and existence).
fn matches(object: &Value, selector: Option<&str>) -> bool {
    let labels = &object["metadata"]["labels"];
    selector
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.is_empty())
        .all(|requirement| {
            if let Some((key, value)) = requirement.split_once("!=") {
                labels[key.trim()] != json!(value.trim())
            } else if let Some((key, value)) = requirement.split_once('=') {
                labels[key.trim().trim_end_matches('=')]
                    == json!(value.trim().trim_start_matches('='))
            } else if let Some(key) = requirement.strip_prefix('!') {
                labels[key.trim()].is_null()
            } else {
                !labels[requirement.trim()].is_null()
            }
        })
}

/// A JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().unwrap().remove(key);
                } else {
                    merge(&mut target[key], value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Now as RFC 3339 in UTC, to the second, as the API server writes timestamps.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Kubelet's part for the pods of one namespace, played against a real containerd: it runs
/// each new pod as its spec says (image, args, privileged, host PID namespace, hostPath
/// volumes), ends those whose `activeDeadlineSeconds` was cut to one second or that were
/// deleted (SIGTERM, then SIGKILL after the grace period, as kubelet does), and reports the
/// phase and log of those that exited.
#[derive(Default)]
pub struct Kubelet {
    running: BTreeMap<String, Started>,
}

struct Started {
    container: crate::containerd::Container,
    /// Ended by its deadline: Failed with reason DeadlineExceeded, as kubelet reports it.
    deadline: bool,
}

impl Kubelet {
    /// One pass over the pods of `namespace`.
    pub fn sync(
        &mut self,
        api: &FakeApi,
        containerd: &mut crate::containerd::Containerd,
        namespace: &str,
    ) {
        let pods = api.pods(namespace);
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
            if pod["status"]["phase"] == "Pending" && !self.running.contains_key(&name) {
                let container = start(pod, containerd);
                api.set_status(namespace, &name, "Running", None, "");
                self.running.insert(
                    name,
                    Started {
                        container,
                        deadline: false,
                    },
                );
            }
        }
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let pod = pods.iter().find(|p| p["metadata"]["name"] == name.as_str());
            let started = self.running.get_mut(&name).unwrap();
            let cut = pod.is_none_or(|p| p["spec"]["activeDeadlineSeconds"] == 1);
            if cut && !started.deadline {
                started.deadline = true;
                containerd.stop_container(&started.container, 30);
            }
            if let Some(code) = containerd.exit_code(&started.container) {
                let (phase, reason) = match (code, started.deadline) {
                    (_, true) => ("Failed", Some("DeadlineExceeded")),
                    (0, false) => ("Succeeded", None),
                    _ => ("Failed", None),
                };
                api.set_status(namespace, &name, phase, reason, &started.container.stdout());
                self.running.remove(&name);
            }
        }
    }
}

/// Runs `pod`'s one container in containerd as kubelet would.
fn start(
    pod: &Value,
    containerd: &mut crate::containerd::Containerd,
) -> crate::containerd::Container {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let privileged = container["securityContext"]["privileged"] == true && spec["hostPID"] == true;
    let sandbox = containerd.run_pod(name, uid, privileged);
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let args = strings(&container["args"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mounts: Vec<(PathBuf, PathBuf)> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|mount| {
            let volume = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("a mount names a volume");
            (
                PathBuf::from(volume["hostPath"]["path"].as_str().unwrap()),
                PathBuf::from(mount["mountPath"].as_str().unwrap()),
            )
        })
        .collect();
    let mounts: Vec<(&Path, &Path, bool)> = mounts
        .iter()
        .map(|(h, c)| (h.as_path(), c.as_path(), false))
        .collect();
    containerd.start_container(
        &sandbox,
        container["name"].as_str().unwrap(),
        &crate::containerd::Spec {
            image: container["image"].as_str().unwrap(),
            command: &[],
            args: &args,
            env: &[],
            mounts: &mounts,
        },
    )
}
