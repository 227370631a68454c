//! Writes the seed corpora under `fuzz/seeds/<target>/` (committed; run again after a format
//! changes): `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds -- fuzz/seeds`.
//! Everything is made here, from the kernel's own encoders where there is one; nothing is
//! downloaded.

use bytes::Bytes;
use std::path::{Path, PathBuf};
use torchbook_kernel::protocol::messages::*;
use torchbook_kernel::protocol::{Content, Message, Signer, WireMessage};
use torchbook_kernel::wire::cell_error::CellError;
use torchbook_kernel::wire::engine::{write_line, CellOutcome, Completions, FromEngine, Inspection, ToEngine};
use torchbook_kernel::wire::question_mark::MARKER;
use torchbook_kernel::wire::side_channel::{Record, StreamKind, RECORD_PREFIX};

/// The key `wire_frames` signs with in mode 1.
const KEY: &str = "fuzz-key";

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// `wire_frames`' input: the mode byte, then the frames joined by 0x1F.
fn frames_input(mode: u8, frames: &[Bytes]) -> Vec<u8> {
    let mut out = vec![mode];
    for (i, frame) in frames.iter().enumerate() {
        assert!(!frame.contains(&0x1f), "a seed frame holds the separator");
        if i > 0 {
            out.push(0x1f);
        }
        out.extend_from_slice(frame);
    }
    out
}

/// A message with fixed ids and date, so that the seeds do not change from run to run.
fn message(content: Content, parent: Option<&Header>) -> Message {
    let mut m = Message::new(content, parent, "5e55107e-0000-4000-8000-000000000001");
    m.header.msg_id = format!("{}-1", m.header.msg_type);
    m.header.date = "2026-01-01T00:00:00.000000Z".into();
    m
}

fn wire_frames(seeds: &Seeds) {
    let request = message(Content::KernelInfoRequest(KernelInfoRequest {}), None);
    let execute = message(
        Content::ExecuteRequest(ExecuteRequest {
            code: "let x = 1 + 1;\nx".into(),
            silent: false,
            store_history: true,
            user_expressions: serde_json::from_str(r#"{"y":"x * 2"}"#).unwrap(),
            allow_stdin: true,
            stop_on_error: true,
        }),
        None,
    );
    let mut reply = message(
        Content::ExecuteReply(ExecuteReply {
            status: ReplyStatus::Error,
            execution_count: 3,
            error: Some(ErrorInfo { ename: "Panic".into(), evalue: "boom".into(), traceback: vec!["boom".into()] }),
            user_expressions: Default::default(),
            payload: vec![],
        }),
        Some(&execute.header),
    );
    reply.buffers = vec![Bytes::from_static(b"\x00\x01buffer"), Bytes::from_static(b"")];
    let complete = message(Content::CompleteRequest(CompleteRequest { code: "vec.pu".into(), cursor_pos: 6 }), None);
    let unknown = message(
        Content::Unknown { msg_type: "comm_open".into(), content: serde_json::json!({"comm_id": "c", "target_name": "t", "data": {}}) },
        None,
    );
    let history = message(
        Content::HistoryRequest(serde_json::from_str(r#"{"hist_access_type":"tail","n":10,"output":false,"raw":true}"#).unwrap()),
        None,
    );
    let cases: [(&str, Message, Vec<Bytes>); 6] = [
        ("kernel_info", request, vec![Bytes::from_static(b"peer-1")]),
        ("execute", execute, vec![Bytes::from_static(b"\x00\x80\xffid"), Bytes::from_static(b"second")]),
        ("execute_reply", reply, vec![]),
        ("complete", complete, vec![Bytes::from_static(b"peer")]),
        ("unknown_type", unknown, vec![]),
        ("history", history, vec![]),
    ];
    for (name, message, identities) in cases {
        let wire = WireMessage { identities, message };
        seeds.write("wire_frames", &format!("{name}_signed"), frames_input(1, &wire.encode(&Signer::new(KEY))));
        seeds.write("wire_frames", &format!("{name}_unsigned"), frames_input(0, &wire.encode(&Signer::new(""))));
        seeds.write("wire_frames", &format!("{name}_resigned"), frames_input(3, &wire.encode(&Signer::new(""))));
    }
}

fn connection_file(seeds: &Seeds) {
    let tcp = r#"{"transport":"tcp","ip":"127.0.0.1","shell_port":50001,"iopub_port":50002,"stdin_port":50003,"control_port":50004,"hb_port":50005,"key":"a0436f6c-1916-498b-8eb9-e81ab9368e84","signature_scheme":"hmac-sha256","kernel_name":"torchbook"}"#;
    seeds.write("connection_file", "tcp.json", tcp);
    seeds.write("connection_file", "ipc.json", tcp.replace("\"tcp\"", "\"ipc\"").replace("127.0.0.1", "/tmp/kernel-1"));
    seeds.write("connection_file", "unsigned_network.json", tcp.replace("a0436f6c-1916-498b-8eb9-e81ab9368e84", "").replace("127.0.0.1", "0.0.0.0"));
    seeds.write("connection_file", "minimal.json", r#"{"transport":"tcp","ip":"::1","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}"#);
    seeds.write("connection_file", "bad_scheme.json", tcp.replace("hmac-sha256", "hmac-md5"));
}

fn records() -> Vec<Record> {
    let data = |text: &str| serde_json::from_value(serde_json::json!({"text/plain": text, "text/html": "<b>x</b>", "application/json": {"a": [1, 2.5, null]}})).unwrap();
    vec![
        Record::Panic { message: "boom\nsecond line".into(), location: "src/lib.rs:3:5".into(), thread: "main".into() },
        Record::UserError { type_name: "std::io::error::Error".into(), message: "no such file".into() },
        Record::Display { data: data("x"), metadata: Default::default(), display_id: Some("d1".into()) },
        Record::UpdateDisplay { data: data("y"), metadata: serde_json::from_str(r#"{"image/png":{"width":8}}"#).unwrap(), display_id: "d1".into() },
        Record::ClearOutput { wait: true },
        Record::Result { data: data("2"), metadata: Default::default() },
        Record::Stream { name: StreamKind::Stderr, text: "50%\r".into() },
    ]
}

fn engine_records(seeds: &Seeds) {
    let mut to = Vec::new();
    for request in [
        ToEngine::Execute { code: "let x = 1;\nprintln!(\"{x}\");".into() },
        ToEngine::Evaluate { id: 1, expression: "x + 1".into() },
        ToEngine::Complete { id: 2, code: "x.".into(), byte_pos: 2 },
        ToEngine::Inspect { id: 3, code: "x".into(), byte_pos: 1 },
        ToEngine::InputReply { value: Some("typed".into()) },
        ToEngine::InputReply { value: None },
        ToEngine::InterruptWorker,
        ToEngine::KillWorker,
    ] {
        write_line(&mut to, &request).unwrap();
    }
    seeds.write("engine_records", "to_engine", to);
    let mut from = Vec::new();
    let value = CellOutcome::Value([("text/plain".to_owned(), "2".to_owned())].into_iter().collect());
    let mut events = vec![
        FromEngine::Stdout { text: "a \"quoted\"\nline".into() },
        FromEngine::Stderr { text: "warning\n".into() },
        FromEngine::InputRequest { prompt: "name? ".into(), password: true },
        FromEngine::Finished { outcome: value },
        FromEngine::Finished { outcome: CellOutcome::Failed(CellError::engine_died("killed by signal 9")) },
        FromEngine::Evaluated { id: 7, outcome: CellOutcome::Failed(CellError::returned("std::io::error::Error", "gone")) },
        FromEngine::Completed { id: 2, completions: Completions { matches: vec!["push".into(), "pop".into()], start: 2, end: 2 } },
        FromEngine::Inspected { id: 3, inspection: Inspection { hover: Some(("fn f()".into(), "<pre>fn f()</pre>".into())), variable_type: Some("i32".into()) } },
        FromEngine::Warm,
    ];
    events.extend(records().into_iter().map(|record| FromEngine::Record { record }));
    for event in events {
        write_line(&mut from, &event).unwrap();
    }
    seeds.write("engine_records", "from_engine", from);
}

fn side_channel(seeds: &Seeds) {
    for (i, record) in records().into_iter().enumerate() {
        let line = format!("{RECORD_PREFIX}{}\n", serde_json::to_string(&record).unwrap());
        seeds.write("side_channel", &format!("record_{i}"), line);
    }
    seeds.write("side_channel", "mixed", format!("plain output\n{RECORD_PREFIX}{{\"type\":\"clear_output\"}}\nmore\n"));
    seeds.write("side_channel", "mime_json", "application/vnd.custom+json\n{\"a\": [1, {\"b\": null}]}");
}

fn question_mark(seeds: &Seeds) {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    seeds.write("question_mark", "marker", format!("{MARKER}{} {}\n", hex("std::io::error::Error"), hex("no such file: \"a\"\nsecond")));
    seeds.write("question_mark", "type_and_message", "alloc::boxed::Box<dyn core::error::Error>\0Exception raised from foo at bar.cpp:1\nframe #0: baz");
    // What evcxr 0.22 generates for a cell that uses `?` (as in question_mark's unit tests).
    let evcxr = "\n            struct EvcxrUserCodeError {}\n            impl<T: std::fmt::Display> From<T> for EvcxrUserCodeError {\n                fn from(error: T) -> Self {\n                    eprintln!(\"{}\", error);\n                    println!(\"{}\", evcxr_internal_runtime::USER_ERROR_OCCURRED);\n                    EvcxrUserCodeError {}\n                }\n            }\n        \nfn run() {}";
    seeds.write("question_mark", "evcxr_cell.rs", evcxr);
    seeds.write("question_mark", "evcxr_cell_debug.rs", evcxr.replace("eprintln!(\"{}\"", "eprintln!(\"{:#?}\""));
}

fn is_complete(seeds: &Seeds) {
    let snippets = [
        ("complete", "let x = 1 + 1;\nx"),
        ("items", "struct P { x: i32 }\nimpl P {\n    fn new() -> Self { P { x: 1 } }\n}\nP::new().x"),
        ("open_brace", "fn f() {\n    if x {"),
        ("string", "let s = \"abc\\\"}\";\nlet r = r#\"raw \"# ;"),
        ("unterminated", "let r = r##\"raw"),
        ("comment", "/* outer /* nested */ still open"),
        ("dangling", "let v = vec![1, 2,"),
        ("invalid", "let = ;)"),
        ("command", ":dep rand = \"0.8\"\n:vars"),
        ("closure", "let f = |a: i32| -> i32 { a * 2 };\n(0..10).map(f).sum::<i32>()"),
        ("generics", "fn g<T: Into<f64>>(x: T) -> f64 where T: Copy { x.into() }\nlet a: Vec<Vec<u8>> = vec![];"),
        ("macro", "macro_rules! m { ($x:expr) => { $x + 1 }; }\nm!(2)"),
        ("chars", "let c = '\\u{1F600}'; let b = b'x'; let l = 'a;"),
        ("tch", "let t = Tensor::randn([2, 3], (Kind::Float, Device::Cpu));\nt.sum(Kind::Float)"),
    ];
    for (name, code) in snippets {
        seeds.write("is_complete", &format!("{name}.rs"), code);
    }
}

// The runtime's loaders.

/// An IDX file: magic (0, 0, type, rank), big-endian dimensions, then the data.
fn idx(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn idx_seeds(seeds: &Seeds) {
    seeds.write("idx", "images_u8", idx(0x08, &[2, 2, 3], &(0..12).collect::<Vec<u8>>()));
    seeds.write("idx", "labels_u8", idx(0x08, &[4], &[3, 1, 4, 1]));
    seeds.write("idx", "i8", idx(0x09, &[3], &[0x80, 0, 0x7f]));
    seeds.write("idx", "i16", idx(0x0B, &[2], &[0x12, 0x34, 0xff, 0xfe]));
    seeds.write("idx", "i32", idx(0x0C, &[1, 2], &[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff]));
    let floats: Vec<u8> = [1.5f32, -0.25].iter().flat_map(|f| f.to_be_bytes()).collect();
    seeds.write("idx", "f32", idx(0x0D, &[2], &floats));
    seeds.write("idx", "f64", idx(0x0E, &[1], &2.5f64.to_be_bytes()));
    seeds.write("idx", "scalar", idx(0x08, &[], &[7]));
}

fn csv_seeds(seeds: &Seeds) {
    // `csv` target input: the delimiter byte, the target column's name and a newline, the file.
    seeds.write("csv", "comma", ",label\nx1,x2,label\n1.0,2.5,0\n-3,4e-2,1\n0.5,0.25,2\n");
    seeds.write("csv", "semicolon", ";species\nsepal;petal;species\n5.1;1.4;0\n\n7.0;4.7;1\n");
    seeds.write("csv", "quoted", ",y\n\"a\",\"y\"\n\"1\",\" 2.5\"\n");
    seeds.write("csv", "crlf", "\tt\r\nt\ta\r\n1\t2\r\n3\t-4\r\n");
    seeds.write("csv", "target_only", ",t\nt\n1\n2\n");
}

/// A gettext `.mo` file: magic, revision, count, original and translation tables, strings.
fn mo(entries: &[(&str, &str)], little: bool) -> Vec<u8> {
    let word = |v: u32| if little { v.to_le_bytes() } else { v.to_be_bytes() };
    let n = entries.len() as u32;
    let (originals_at, translations_at) = (28u32, 28 + 8 * n);
    let mut strings = Vec::new();
    let mut tables = [Vec::new(), Vec::new()];
    let start = translations_at + 8 * n;
    for which in 0..2 {
        for (original, translation) in entries {
            let text = if which == 0 { original } else { translation };
            tables[which].extend(word(text.len() as u32));
            tables[which].extend(word(start + strings.len() as u32));
            strings.extend_from_slice(text.as_bytes());
            strings.push(0);
        }
    }
    let mut out = Vec::new();
    for v in [0x9504_12de, 0, n, originals_at, translations_at, 0, 0] {
        out.extend(word(v));
    }
    out.extend(&tables[0]);
    out.extend(&tables[1]);
    out.extend(strings);
    out
}

fn mo_seeds(seeds: &Seeds) {
    let entries = [
        ("", "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"),
        ("Save", "Speichern"),
        ("%d item\0%d items", "%d Element\0%d Elemente"),
        ("menu\u{4}Open", "Öffnen"),
    ];
    seeds.write("mo", "de_le.mo", mo(&entries, true));
    seeds.write("mo", "de_be.mo", mo(&entries, false));
    seeds.write("mo", "empty.mo", mo(&[], true));
}

fn image_seeds(seeds: &Seeds) {
    use image::{ImageFormat, Rgb, RgbImage, GrayImage, Luma, RgbaImage, Rgba};
    let rgb = RgbImage::from_fn(5, 4, |x, y| Rgb([(x * 50) as u8, (y * 60) as u8, 128]));
    let gray = GrayImage::from_fn(3, 3, |x, y| Luma([(x * 80 + y * 10) as u8]));
    let rgba = RgbaImage::from_fn(2, 3, |x, y| Rgba([255, (x * 100) as u8, (y * 70) as u8, 200]));
    let encode = |image: &dyn Fn(&mut std::io::Cursor<Vec<u8>>, ImageFormat), format| {
        let mut out = std::io::Cursor::new(Vec::new());
        image(&mut out, format);
        out.into_inner()
    };
    // `image` target input: height and width bytes (1 + b % 32 each), then the file.
    let write = |name: &str, size: [u8; 2], format, encoder: &dyn Fn(&mut std::io::Cursor<Vec<u8>>, ImageFormat)| {
        let mut bytes = size.to_vec();
        bytes.extend(encode(encoder, format));
        seeds.write("image", name, bytes);
    };
    write("rgb.png", [6, 4], ImageFormat::Png, &|o, f| rgb.write_to(o, f).unwrap());
    write("gray.png", [2, 2], ImageFormat::Png, &|o, f| gray.write_to(o, f).unwrap());
    write("rgba.png", [0, 0], ImageFormat::Png, &|o, f| rgba.write_to(o, f).unwrap());
    write("rgb.jpg", [3, 7], ImageFormat::Jpeg, &|o, f| rgb.write_to(o, f).unwrap());
    write("gray.jpg", [31, 31], ImageFormat::Jpeg, &|o, f| gray.write_to(o, f).unwrap());
}

fn main() {
    let root = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| Path::new("fuzz/seeds").to_owned());
    let seeds = Seeds { root };
    wire_frames(&seeds);
    connection_file(&seeds);
    engine_records(&seeds);
    side_channel(&seeds);
    question_mark(&seeds);
    is_complete(&seeds);
    idx_seeds(&seeds);
    csv_seeds(&seeds);
    mo_seeds(&seeds);
    image_seeds(&seeds);
    println!("seeds written under {}", seeds.root.display());
}
