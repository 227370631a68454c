//! `torchbook-serve` as a client sees it: the real binary on a free port, a model exported by
//! the runtime, requests with a real HTTP client (reqwest). Predictions (JSON and raw) equal
//! the model's own; every kind of bad request is refused with a sentence and the service keeps
//! answering; metrics count what happened; concurrent requests are batched; a non-loopback
//! address needs a token, and then requests need it; SIGTERM stops it cleanly.

use reqwest::blocking::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use torchbook::prelude::*;

const TOKEN: &str = "s3cret-token-0123456789abcdef";

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tb-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small CNN on [1, 6, 6] inputs, exported to `dir/model.pt`.
fn exported_cnn(dir: &Path) -> (Model, PathBuf) {
    tch::manual_seed(1);
    let net = Sequential::new().add(Conv2d::new(4, 3)).add(ReLU).add(Flatten).add(Dense::new(3));
    let model = Model::build(Box::new(net), &[1, 6, 6], Kind::Float, Device::Cpu).unwrap();
    let path = dir.join("model.pt");
    model.export_torchscript(&path, &Tensor::randn([2, 1, 6, 6], (Kind::Float, Device::Cpu))).unwrap();
    (model, path)
}

struct Server {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        match Server::try_start(model, extra) {
            Ok(server) => server,
            Err(output) => panic!("torchbook-serve did not start:\n{output}"),
        }
    }

    /// The server, or what it printed before exiting.
    fn try_start(model: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_torchbook-serve"))
            .arg(model)
            .args(["--port", "0", "--threads", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = String::new();
        loop {
            match stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(at) = line.find("listening on http://") {
                        let url = line[at + "listening on ".len()..].trim().to_string();
                        return Ok(Server { child, url, stderr });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    return Err(format!("{seen}(exit: {status})"));
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replace("0.0.0.0", "127.0.0.1"))
    }

    fn metrics(&self, client: &Client) -> String {
        client.get(self.url("/metrics")).bearer_auth(TOKEN).send().unwrap().text().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nested(t: &Tensor) -> serde_json::Value {
    if t.dim() == 0 {
        return serde_json::json!(t.double_value(&[]));
    }
    serde_json::Value::Array((0..t.size()[0]).map(|i| nested(&t.get(i))).collect())
}

fn json_body(xs: &Tensor) -> String {
    serde_json::json!({ "inputs": nested(xs) }).to_string()
}

fn outputs_of(body: &str) -> Tensor {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(value["outputs"].clone()).unwrap();
    let n = rows.len() as i64;
    Tensor::from_slice(&rows.concat()).reshape([n, -1])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn raw(xs: &Tensor) -> Vec<u8> {
    let mut bytes = vec![0u8; xs.numel() * 4];
    xs.contiguous().copy_data_u8(&mut bytes, xs.numel());
    bytes
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[test]
fn json_and_raw_predictions_equal_the_models() {
    let dir = folder("predict");
    let (model, path) = exported_cnn(&dir);
    let server = Server::start(&path, &[]);
    let client = Client::new();

    let health = client.get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().unwrap().contains("\"input\":\"[batch, 1, 6, 6] float32\""));

    let xs = Tensor::randn([3, 1, 6, 6], (Kind::Float, Device::Cpu));
    let response = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(json_body(&xs)).send().unwrap();
    assert_eq!(response.status(), 200);
    let found = outputs_of(&response.text().unwrap());
    assert!(max_diff(&found, &model.predict(&xs, 100).unwrap()) < 1e-5);

    let xs = Tensor::randn([5, 1, 6, 6], (Kind::Float, Device::Cpu));
    let response = client
        .post(server.url("/v1/predict"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Tensor-Shape", "5,1,6,6")
        .header("X-Tensor-Dtype", "float32")
        .body(raw(&xs))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tensor-shape"], "5,3");
    assert_eq!(response.headers()["x-tensor-dtype"], "float32");
    let bytes = response.bytes().unwrap();
    let found = Tensor::from_data_size(&bytes, &[5, 3], Kind::Float);
    assert!(max_diff(&found, &model.predict(&xs, 100).unwrap()) < 1e-5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_requests_are_refused_with_what_was_expected_and_the_service_goes_on() {
    let dir = folder("bad");
    let (model, path) = exported_cnn(&dir);
    let server = Server::start(&path, &["--max-body-bytes", "4096"]);
    let client = Client::new();
    let post = |content_type: &str, headers: &[(&str, &str)], body: Vec<u8>| {
        let mut request = client.post(server.url("/v1/predict")).header("Content-Type", content_type).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {text:?}: {e}"));
        (status, body["error"].as_str().unwrap().to_string())
    };
    let one = Tensor::randn([1, 1, 6, 6], (Kind::Float, Device::Cpu));
    let raw_headers = [("X-Tensor-Shape", "1,1,6,6"), ("X-Tensor-Dtype", "float32")];
    let cases: Vec<(u16, String, &str)> = vec![
        {
            let (s, m) = post("application/json", &[], b"{\"inputs\": [[".to_vec());
            (s, m, "the body is not valid JSON")
        },
        {
            let (s, m) = post("application/json", &[], br#"{"inputs": [[[[1, 2, 3, 4, 5, 6, 7]]]]}"#.to_vec());
            (s, m, "inputs[0][0][0]: expected a list of 6 (an example has shape [1, 6, 6]), found a longer list")
        },
        {
            let (s, m) = post("application/json", &[], br#"{"examples": []}"#.to_vec());
            (s, m, "expected a JSON object {\"inputs\": [example, …]} with examples of shape [1, 6, 6]")
        },
        {
            let (s, m) = post("application/octet-stream", &[("X-Tensor-Shape", "1,1,6,6"), ("X-Tensor-Dtype", "float64")], raw(&one));
            (s, m, "X-Tensor-Dtype: expected float32 (the model's input), found \"float64\"")
        },
        {
            let (s, m) = post("application/octet-stream", &[("X-Tensor-Shape", "1,36"), ("X-Tensor-Dtype", "float32")], raw(&one));
            (s, m, "X-Tensor-Shape: expected N,1, 6, 6 with N ≥ 1 (batch first), found \"1,36\"")
        },
        {
            let (s, m) = post("application/octet-stream", &[("X-Tensor-Shape", "one"), ("X-Tensor-Dtype", "float32")], raw(&one));
            (s, m, "X-Tensor-Shape: expected sizes separated by commas")
        },
        {
            let (s, m) = post("application/octet-stream", &[("X-Tensor-Dtype", "float32")], raw(&one));
            (s, m, "expected a header X-Tensor-Shape")
        },
        {
            let (s, m) = post("application/octet-stream", &raw_headers, raw(&one)[..100].to_vec());
            (s, m, "the body: expected 144 bytes (36 float32 values for shape [1, 1, 6, 6]), found 100 bytes")
        },
        {
            let (s, m) = post("text/plain", &[], b"hello".to_vec());
            (s, m, "Content-Type: expected application/json or application/octet-stream, found \"text/plain\"")
        },
        {
            let (s, m) = post("application/octet-stream", &[("X-Tensor-Shape", "32,1,6,6"), ("X-Tensor-Dtype", "float32")], vec![0u8; 32 * 144]);
            (s, m, "the body: expected at most 4096 bytes (--max-body-bytes), found more")
        },
    ];
    let expected_status = [400, 400, 400, 400, 400, 400, 400, 400, 415, 413];
    for ((status, message, expected), want) in cases.iter().zip(expected_status) {
        assert_eq!(*status, want, "{message}");
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
    }

    // Over the limit without a Content-Length (chunked): cut off while reading.
    let response = client
        .post(server.url("/v1/predict"))
        .header("Content-Type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(vec![b' '; 5000])))
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.text().unwrap().contains("expected at most 4096 bytes"));

    // Still serving, and correct.
    let response = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(json_body(&one)).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(max_diff(&outputs_of(&response.text().unwrap()), &model.predict(&one, 1).unwrap()) < 1e-5);

    let text = server.metrics(&client);
    assert_eq!(metric(&text, "torchbook_serve_requests_total{route=\"/v1/predict\",status=\"400\"}"), 8.0);
    assert_eq!(metric(&text, "torchbook_serve_requests_total{route=\"/v1/predict\",status=\"413\"}"), 2.0);
    assert_eq!(metric(&text, "torchbook_serve_requests_total{route=\"/v1/predict\",status=\"415\"}"), 1.0);
    assert_eq!(metric(&text, "torchbook_serve_requests_total{route=\"/v1/predict\",status=\"200\"}"), 1.0);
    assert_eq!(metric(&text, "torchbook_serve_request_duration_seconds_count"), 12.0);
    assert_eq!(metric(&text, "torchbook_serve_batch_size_count"), 1.0, "only the good request ran the model");
    assert_eq!(metric(&text, "torchbook_serve_inference_errors_total"), 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn concurrent_requests_are_batched_and_each_gets_its_own_answer() {
    let dir = folder("batch");
    let (model, path) = exported_cnn(&dir);
    let server = Server::start(&path, &["--max-batch", "64", "--max-delay-ms", "50"]);
    let clients = 16;
    let barrier = std::sync::Barrier::new(clients);
    let inputs: Vec<Tensor> = (0..clients).map(|_| Tensor::randn([1, 1, 6, 6], (Kind::Float, Device::Cpu))).collect();
    let bodies: Vec<String> = inputs.iter().map(json_body).collect();
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let (barrier, url) = (&barrier, server.url("/v1/predict"));
                scope.spawn(move || {
                    let client = Client::new();
                    barrier.wait();
                    let response = client.post(url).header("Content-Type", "application/json").body(body.clone()).send().unwrap();
                    assert_eq!(response.status(), 200);
                    response.text().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (xs, answer) in inputs.iter().zip(&answers) {
        assert!(max_diff(&outputs_of(answer), &model.predict(xs, 1).unwrap()) < 1e-5, "each request gets its own rows");
    }
    let text = server.metrics(&Client::new());
    let runs = metric(&text, "torchbook_serve_batch_requests_count");
    let single = metric(&text, "torchbook_serve_batch_requests_bucket{le=\"1\"}");
    assert_eq!(metric(&text, "torchbook_serve_batch_size_sum"), clients as f64);
    assert!(runs < clients as f64 && single < runs, "some runs merged several requests:\n{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_non_loopback_address_needs_a_token_and_then_so_do_requests() {
    let dir = folder("token");
    let (_, path) = exported_cnn(&dir);
    let refused = Server::try_start(&path, &["--host", "0.0.0.0"]).err().expect("refuses to start");
    assert!(refused.contains("refusing to serve on 0.0.0.0:0, which is not a loopback address, without a bearer token"), "{refused}");
    assert!(refused.contains("exit status: 1"), "{refused}");

    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = Server::start(&path, &["--host", "0.0.0.0", "--token-file", token_file.to_str().unwrap()]);
    let client = Client::new();
    let body = json_body(&Tensor::zeros([1, 1, 6, 6], (Kind::Float, Device::Cpu)));
    let predict = |token: Option<&str>| {
        let mut request = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    };
    let missing = predict(None);
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert!(missing.text().unwrap().contains("expected a header Authorization: Bearer <token>"));
    assert_eq!(predict(Some("s3cret-token-0123456789abcdeF")).status(), 401);
    assert_eq!(predict(Some(&TOKEN[..TOKEN.len() - 1])).status(), 401);
    assert_eq!(predict(Some(TOKEN)).status(), 200);
    assert_eq!(client.get(server.url("/metrics")).send().unwrap().status(), 401);
    assert_eq!(client.get(server.url("/healthz")).send().unwrap().status(), 200, "probes need no token");
    let text = server.metrics(&client);
    assert_eq!(metric(&text, "torchbook_serve_requests_total{route=\"/v1/predict\",status=\"401\"}"), 3.0);
    let mut server = server;
    let _ = server.child.kill();
    let printed: Vec<String> = server.stderr.try_iter().collect();
    assert!(!printed.concat().contains(TOKEN), "the token is never printed");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_stops_it_cleanly() {
    let dir = folder("sigterm");
    let (_, path) = exported_cnn(&dir);
    let mut server = Server::start(&path, &[]);
    assert_eq!(Client::new().get(server.url("/healthz")).send().unwrap().status(), 200);
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert_eq!(server.stderr.recv_timeout(Duration::from_secs(10)).unwrap(), "torchbook serve: stopped");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_model_without_sidecar_needs_its_input_given_and_one_traced_for_a_fixed_batch_is_padded() {
    let dir = folder("spec");
    let (model, path) = exported_cnn(&dir);
    std::fs::remove_file(dir.join("model.pt.json")).unwrap();
    let refused = Server::try_start(&path, &[]).err().expect("no sidecar, no --input-shape");
    assert!(refused.contains("no sidecar") && refused.contains("pass --input-shape"), "{refused}");
    let refused = Server::try_start(&path, &["--input-shape", "1,5,5"]).err().expect("the model cannot take that");
    assert!(refused.contains("the model fails on an input of [batch, 1, 5, 5] float32"), "{refused}");
    let server = Server::start(&path, &["--input-shape", "1,6,6", "--input-dtype", "float32"]);
    let xs = Tensor::randn([2, 1, 6, 6], (Kind::Float, Device::Cpu));
    let client = Client::new();
    let response = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(json_body(&xs)).send().unwrap();
    assert!(max_diff(&outputs_of(&response.text().unwrap()), &model.predict(&xs, 10).unwrap()) < 1e-5);
    drop(server);

    tch::manual_seed(2);
    let net = Sequential::new().add(TransformerEncoderLayer::new(8, 2, 16)).add(Flatten).add(Dense::new(2));
    let attention = Model::build(Box::new(net), &[4, 8], Kind::Float, Device::Cpu).unwrap();
    let path = dir.join("attention.pt");
    attention.export_torchscript(&path, &Tensor::randn([3, 4, 8], (Kind::Float, Device::Cpu))).unwrap();
    let server = Server::start(&path, &[]);
    let one = Tensor::randn([1, 4, 8], (Kind::Float, Device::Cpu));
    let response = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(json_body(&one)).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(max_diff(&outputs_of(&response.text().unwrap()), &attention.predict(&one, 1).unwrap()) < 1e-5);
    let four = Tensor::randn([4, 4, 8], (Kind::Float, Device::Cpu));
    let response = client.post(server.url("/v1/predict")).header("Content-Type", "application/json").body(json_body(&four)).send().unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().unwrap().contains("expected at most 3 examples per request (the model was traced for batches of 3), found 4"));
    std::fs::remove_dir_all(dir).unwrap();
}
