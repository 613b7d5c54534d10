//! OpenTelemetry, as a collector receives it (issue #17, part 5): the built binary on
//! PostgreSQL exports to an OTLP/HTTP receiver in this test, which decodes the protobuf
//! with the protocol's own generated types. Checked: the spans of a verification and of a
//! management call with their attributes, the metric names, and that no secret appears
//! anywhere in what was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use keyward_store_pg::testing::TestDatabase;
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
};
use prost::Message as _;
use serde_json::json;

mod common;

use common::{Server, account_key};

/// What the receiver got: every body as sent (for the secrets grep), and the decoded
/// exports.
#[derive(Default)]
struct Received {
    raw: Vec<Vec<u8>>,
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    paths: BTreeSet<String>,
    content_types: BTreeSet<String>,
}

/// An OTLP/HTTP receiver: HTTP/1.1 with keep-alive, `POST /v1/traces` and `/v1/metrics`
/// with `application/x-protobuf` bodies, each answered 200.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let received = shared.clone();
                std::thread::spawn(move || serve(stream, &received));
            }
        });
        Self { endpoint, received }
    }

    /// Waits (up to 20 s) until `done` holds of what was received.
    fn wait_for(&self, what: &str, done: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if done(&self.received.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let received = self.received.lock().unwrap();
        panic!("never received {what}; spans: {:?}; metrics: {:?}", span_names(&received), metric_names(&received));
    }
}

fn serve(stream: TcpStream, received: &Mutex<Received>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(common::http::Request { path, headers, body }) = common::http::read_request(&mut reader) {
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        {
            let mut received = received.lock().unwrap();
            match path.as_str() {
                "/v1/traces" => received.traces.push(ExportTraceServiceRequest::decode(&body[..]).unwrap()),
                "/v1/metrics" => received.metrics.push(ExportMetricsServiceRequest::decode(&body[..]).unwrap()),
                _ => {}
            }
            received.paths.insert(path);
            received.content_types.insert(content_type);
            received.raw.push(body);
        }
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    }
}

/// A span as the test reads it: name, kind, ids and attributes as text.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    attributes: BTreeMap<String, String>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

fn spans(received: &Received) -> Vec<Span> {
    received
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| Span {
            name: s.name.clone(),
            trace_id: s.trace_id.clone(),
            span_id: s.span_id.clone(),
            parent: s.parent_span_id.clone(),
            attributes: attributes(&s.attributes),
        })
        .collect()
}

/// One line per span: its name, trace and attributes (for an assertion's message).
fn brief(spans: &[Span]) -> String {
    spans.iter().map(|s| format!("{} [{}] {:?}\n", s.name, hex(&s.trace_id[..4]), s.attributes)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn span_names(received: &Received) -> BTreeSet<String> {
    spans(received).into_iter().map(|s| s.name).collect()
}

fn metric_names(received: &Received) -> BTreeSet<String> {
    received
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.clone())
        .collect()
}

fn service_names(received: &Received) -> BTreeSet<String> {
    let from_traces = received.traces.iter().flat_map(|r| &r.resource_spans).filter_map(|r| r.resource.as_ref());
    let from_metrics = received.metrics.iter().flat_map(|r| &r.resource_metrics).filter_map(|r| r.resource.as_ref());
    from_traces.chain(from_metrics).filter_map(|r| attributes(&r.attributes).get("service.name").cloned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_receives_the_spans_and_metrics_and_no_secret() {
    let db = TestDatabase::new().await;
    let root = account_key(db.url(), "enterprise");
    let receiver = Receiver::start();
    let metrics_token = "scrape-token-for-the-otlp-test";
    let server = Server::start(&[
        ("DATABASE_URL", db.url()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
        ("OTEL_SERVICE_NAME", "keyward-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("KEYWARD_METRICS_TOKEN", metrics_token),
    ]);

    // A management call, then the key verified twice (a cache miss, then a hit), and a
    // string that is no key.
    let (status, created) = server.call("POST", "/v1/keys", &root, Some(json!({"name": "traced"})));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, verdict) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": key})));
        assert_eq!((status, verdict["code"].as_str()), (200, Some("VALID")), "{verdict}");
    }
    let (_, verdict) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": "kw_live_nothing"})));
    assert_eq!(verdict["code"], "NOT_FOUND");

    receiver.wait_for("the verification spans", |r| {
        spans(r).iter().filter(|s| s.name == "verify").count() >= 3
            && spans(r).iter().any(|s| s.name == "POST /v1/keys")
    });
    receiver.wait_for("every metric", |r| {
        let names = metric_names(r);
        [
            "http.server.request.duration",
            "keyward.verifications",
            "keyward.limiter.decisions",
            "keyward.cache.hits",
            "keyward.cache.misses",
            "keyward.cache.evictions",
            "keyward.db.pool.open",
            "keyward.db.pool.in_use",
            "keyward.db.pool.waiting",
            "keyward.usage.records.buffered",
            "keyward.usage.records.dropped",
            "keyward.usage.flush.duration",
        ]
        .iter()
        .all(|name| names.contains(*name))
    });
    // The last batch: what the graceful stop flushes.
    let output = server.stop();

    let received = receiver.received.lock().unwrap();
    assert_eq!(received.paths, BTreeSet::from(["/v1/metrics".to_owned(), "/v1/traces".to_owned()]));
    assert_eq!(received.content_types, BTreeSet::from(["application/x-protobuf".to_owned()]));
    assert_eq!(service_names(&received), BTreeSet::from(["keyward-under-test".to_owned()]));
    let all = spans(&received);

    // A verification: the request's span (route template, status, request id) and, inside
    // it, the verification's (outcome, cache hit or miss), in one trace.
    let requests: Vec<&Span> = all.iter().filter(|s| s.name == "POST /v1/keys/verify").collect();
    assert_eq!(requests.len(), 3, "{}", brief(&all));
    for request in &requests {
        assert_eq!(request.attributes["http.route"], "/v1/keys/verify");
        assert_eq!(request.attributes["http.request.method"], "POST");
        assert_eq!(request.attributes["http.response.status_code"], "200");
        assert!(request.attributes["request_id"].starts_with("req_"), "{request:?}");
    }
    let verifications: Vec<&Span> = all.iter().filter(|s| s.name == "verify").collect();
    let outcomes: Vec<(&str, &str)> = verifications
        .iter()
        .map(|v| {
            let parent = requests.iter().find(|r| r.span_id == v.parent).expect("inside a request span");
            assert_eq!(parent.trace_id, v.trace_id);
            assert_eq!(v.attributes["request_id"], parent.attributes["request_id"]);
            (v.attributes["keyward.verify.code"].as_str(), v.attributes["keyward.cache"].as_str())
        })
        .collect();
    assert_eq!(outcomes, [("VALID", "miss"), ("VALID", "hit"), ("NOT_FOUND", "miss")], "{}", brief(&all));
    // Each miss went to PostgreSQL, in the verification's trace; the hit did not. (The
    // caller's own key is looked up in the same trace, a hit or a miss of its own.)
    let loads_in = |v: &Span| all.iter().filter(|s| s.name == "store.load_key" && s.trace_id == v.trace_id).count();
    let loads: Vec<usize> = verifications.iter().map(|v| loads_in(v)).collect();
    assert!(loads[0] >= 1 && loads[2] >= 1, "{loads:?} {}", brief(&all));
    assert_eq!(loads[1], 0, "{}", brief(&all));
    let load = all.iter().find(|s| s.name == "store.load_key").unwrap();
    assert_eq!(load.attributes["db.system.name"], "postgresql");

    // A management call: its request span, and the store calls under it.
    let create = all.iter().find(|s| s.name == "POST /v1/keys").unwrap();
    assert_eq!(create.attributes["http.route"], "/v1/keys");
    assert_eq!(create.attributes["http.response.status_code"], "201");
    let store_calls: BTreeSet<&str> = all
        .iter()
        .filter(|s| s.trace_id == create.trace_id && s.name.starts_with("store."))
        .map(|s| s.name.as_str())
        .collect();
    assert!(store_calls.contains("store.insert_keys") && store_calls.contains("store.transaction"), "{store_calls:?}");
    // The usage flush, in a trace of its own.
    assert!(all.iter().any(|s| s.name == "usage.flush" && s.parent.is_empty()), "{}", brief(&all));

    // Metrics: verifications by outcome, as the collector got them.
    let verification_points: Vec<(String, i64)> = received
        .metrics
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "keyward.verifications")
        .filter_map(|m| match &m.data {
            Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(sum)) => Some(sum),
            _ => None,
        })
        .flat_map(|sum| &sum.data_points)
        .map(|p| {
            let value = match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                other => panic!("{other:?}"),
            };
            (attributes(&p.attributes)["outcome"].clone(), value)
        })
        .collect();
    assert!(verification_points.contains(&("VALID".to_owned(), 2)), "{verification_points:?}");
    assert!(verification_points.contains(&("NOT_FOUND".to_owned(), 1)), "{verification_points:?}");

    // No secret in any byte sent: not the key, not its secret part, not the root key, not
    // the scrape token.
    let secret_part = key.rsplit('_').next().unwrap();
    for secret in [key.as_str(), secret_part, root.as_str(), metrics_token] {
        for body in &received.raw {
            assert!(!body.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret:?} was exported");
        }
    }
    // Every export succeeded, the last ones at the stop included.
    assert!(!output.contains("could not export"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_is_off_by_default_and_a_bad_setting_never_stops_the_service() {
    // Nothing configured: nothing is sent anywhere, and /metrics still answers.
    let server = Server::start(&[("KEYWARD_METRICS_TOKEN", "a-scrape-token-long-enough")]);
    let (status, _, _) = server.request("GET", "/healthz", ("x-none", "none"), None);
    assert_eq!(status, 200);
    assert!(!server.output().contains("OTLP"), "{}", server.output());
    drop(server);

    // A protocol Keyward does not speak: a warning, and the service runs without export.
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ]);
    let output = server.output_with("OpenTelemetry is off");
    assert!(output.contains("http/protobuf"), "{output}");
    let (status, _, _) = server.request("GET", "/healthz", ("x-none", "none"), None);
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sampled_trace_is_whole_and_an_unsampled_one_is_never_made() {
    let receiver = Receiver::start();
    let server = Server::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let output = server.output_with("Account key, shown once");
    let root = output.split_whitespace().find(|w| w.starts_with("kw_acct_live_")).unwrap().to_owned();
    for _ in 0..60 {
        let (status, _) = server.call("POST", "/v1/keys/verify", &root, Some(json!({"key": "kw_live_nothing"})));
        assert_eq!(status, 200);
    }
    let output = server.stop();
    assert!(!output.contains("could not export"), "{output}");

    let received = receiver.received.lock().unwrap();
    let all = spans(&received);
    let requests: Vec<&Span> = all.iter().filter(|s| s.name == "POST /v1/keys/verify").collect();
    // About half of 60 (the chance of falling outside 10..=50 is below one in ten million).
    assert!((10..=50).contains(&requests.len()), "{} of 60 kept", requests.len());
    // Each kept request has its verification inside it; no verification without its request.
    let verifications: Vec<&Span> = all.iter().filter(|s| s.name == "verify").collect();
    assert_eq!(verifications.len(), requests.len(), "{}", brief(&all));
    for v in verifications {
        assert!(requests.iter().any(|r| r.span_id == v.parent && r.trace_id == v.trace_id), "{}", brief(&all));
    }
}
