//! Custom sources written as bizon users write them, run by the real `python3` (with pydantic and
//! requests, as CI's: scripts/test.sh makes sure of them), through the stand-in package.

use super::*;

/// A bizon-style custom source: pages of `page_size` records out of `total`, pagination
/// `{"next": n}`, bizon's models and its token authenticator.
pub const GENERATOR: &str = r#"
from typing import List, Optional, Tuple

from bizon.source.auth.builder import AuthBuilder
from bizon.source.auth.authenticators.token import TokenAuthParams
from bizon.source.config import SourceConfig
from bizon.source.models import SourceIteration, SourceRecord
from bizon.source.source import AbstractSource


class GeneratorConfig(SourceConfig):
    total: int = 100
    page_size: int = 10


class GeneratorSource(AbstractSource):
    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.config: GeneratorConfig = config

    @staticmethod
    def streams() -> List[str]:
        return ["records", "other"]

    @staticmethod
    def get_config_class():
        return GeneratorConfig

    def get_authenticator(self):
        if self.config.authentication:
            return AuthBuilder.token(TokenAuthParams(token=self.config.authentication.params.token))
        return None

    def check_connection(self) -> Tuple[bool, Optional[str]]:
        return True, None

    def get_total_records_count(self) -> Optional[int]:
        return self.config.total

    def get(self, pagination: dict = None) -> SourceIteration:
        start = (pagination or {}).get("next", 0)
        if self.config.stream == "other" and start >= 20:
            raise ValueError("page %d is broken" % start)
        end = min(start + self.config.page_size, self.config.total)
        print("page", start, "to", end)  # goes to the log, not into the protocol
        records = [SourceRecord(id=i, data={"id": i, "name": "rec-%d" % i, "é": [1.5, None]}) for i in range(start, end)]
        return SourceIteration(records=records, next_pagination={"next": end} if end < self.config.total else {})
"#;

fn write(dir: &bizon_testkit::fixtures::TempDir, name: &str, code: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, code).unwrap();
    p.display().to_string()
}

fn source(file: &str, stream: &str, config: Json) -> PythonSource {
    let mut config = config;
    config["source_file_path"] = json!(file);
    PythonSource { spec: PythonSourceSpec { file: file.into(), config }, stream: stream.into(), worker: None }
}

fn read_all(s: &mut PythonSource, from: Json) -> Result<(Vec<String>, usize)> {
    let ctx = ReadContext::default();
    let (mut ids, mut pages, mut p) = (Vec::new(), 0, from);
    loop {
        let page = s.get(&p, &ctx)?;
        pages += 1;
        ids.extend(page.records.iter().map(|r| r.id.to_owned()));
        if page.is_last() {
            return Ok((ids, pages));
        }
        p = page.next;
    }
}

#[test]
fn a_bizon_custom_source_pages_through_with_its_config_and_total() {
    let dir = bizon_testkit::fixtures::TempDir::new("pysrc");
    let file = write(&dir, "gen.py", GENERATOR);
    let config = json!({"name": "gen", "stream": "records", "total": 95, "page_size": 10, "unknown_key": 1,
        "authentication": {"type": "api_key", "params": {"token": "t0k"}}});
    let mut s = source(&file, "records", config);
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), Some(95));
    let (ids, pages) = read_all(&mut s, Json::Null).unwrap();
    assert_eq!(pages, 10);
    assert_eq!(ids, (0..95).map(|i| i.to_string()).collect::<Vec<_>>());
    // the record as bizon's orjson writes it: compact, non-ASCII kept
    let page = s.get(&json!({"next": 40}), &ReadContext::default()).unwrap();
    let r = page.records.get(0);
    assert_eq!((r.id, std::str::from_utf8(r.data).unwrap()), ("40", r#"{"id":40,"name":"rec-40","é":[1.5,null]}"#));
    assert!(r.timestamp > 1_700_000_000_000_000, "SourceRecord's timestamp, in µs");
    assert_eq!(page.next, json!({"next": 50}));
    // resuming from a pagination reads the rest only
    let (ids, _) = read_all(&mut s, json!({"next": 90})).unwrap();
    assert_eq!(ids, (90..95).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn errors_name_the_file_class_stage_and_line() {
    let dir = bizon_testkit::fixtures::TempDir::new("pysrc-err");
    let file = write(&dir, "gen.py", GENERATOR);
    // an exception in get(): permanent, located in the user's file
    let mut s = source(&file, "other", json!({"name": "gen", "stream": "other"}));
    let e = read_all(&mut s, Json::Null).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Permanent);
    let m = e.message();
    assert!(
        m.contains("custom source")
            && m.contains("(GeneratorSource) failed in get at gen.py:")
            && m.contains("in get(): ValueError: page 20 is broken"),
        "{m}"
    );
    // a stream the file does not have: a config error listing the streams
    let e = read_all(&mut source(&file, "nope", json!({"name": "gen", "stream": "nope"})), Json::Null).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Config);
    assert!(
        e.message().contains("stream 'nope' not found. Available streams are ['records', 'other']"),
        "{}",
        e.message()
    );
    // a config its class refuses
    let e = read_all(
        &mut source(&file, "records", json!({"name": "gen", "stream": "records", "total": "many"})),
        Json::Null,
    )
    .unwrap_err();
    assert!(
        e.message().contains("failed in load: invalid GeneratorConfig: total: Input should be a valid integer"),
        "{}",
        e.message()
    );
    // a syntax error
    let bad = write(&dir, "bad.py", "def get(:\n");
    let e = read_all(&mut source(&bad, "records", json!({})), Json::Null).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Config);
    assert!(e.message().contains("SyntaxError"), "{}", e.message());
    // no such file
    let e = read_all(&mut source("/nonexistent/x.py", "records", json!({})), Json::Null).unwrap_err();
    assert!(e.message().contains("`/nonexistent/x.py`: no such file"), "{}", e.message());
}

#[test]
fn a_custom_source_calling_an_http_api_with_requests_and_token_auth() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut request, mut auth) = (String::new(), String::new());
            reader.read_line(&mut request).unwrap();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.to_ascii_lowercase().starts_with("authorization:") {
                    auth = h.trim().to_owned();
                }
                if h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            log.lock().unwrap().push(format!("{} {auth}", request.trim()));
            let page: u64 =
                request.split("page=").nth(1).and_then(|r| r.split(' ').next()).unwrap_or("0").parse().unwrap();
            let items: Vec<_> = (page * 3..page * 3 + 3).map(|i| json!({"key": format!("k{i}")})).collect();
            let body = json!({"items": items, "next": if page < 3 { json!(page + 1) } else { Json::Null }}).to_string();
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let code = r#"
from bizon.source.auth.builder import AuthBuilder
from bizon.source.auth.authenticators.token import TokenAuthParams
from bizon.source.config import SourceConfig
from bizon.source.models import SourceIteration, SourceRecord
from bizon.source.source import AbstractSource


class ApiConfig(SourceConfig):
    base_url: str


class ApiSource(AbstractSource):
    @staticmethod
    def streams():
        return ["items"]

    @staticmethod
    def get_config_class():
        return ApiConfig

    def get_authenticator(self):
        return AuthBuilder.token(TokenAuthParams(token=self.config.authentication.params.token))

    def check_connection(self):
        return True, None

    def get_total_records_count(self):
        return None

    def get(self, pagination=None):
        page = (pagination or {}).get("page", 0)
        response = self.session.get(self.config.base_url + "/items", params={"page": page})
        response.raise_for_status()
        body = response.json()
        records = [SourceRecord(id=item["key"], data=item) for item in body["items"]]
        return SourceIteration(records=records, next_pagination={"page": body["next"]} if body["next"] is not None else {})
"#;
    let dir = bizon_testkit::fixtures::TempDir::new("pysrc-http");
    let file = write(&dir, "api.py", code);
    let config = json!({"name": "api", "stream": "items", "base_url": format!("http://127.0.0.1:{port}"),
        "authentication": {"type": "bearer", "params": {"token": "s3cret"}}});
    let mut s = source(&file, "items", config);
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), None);
    let (ids, pages) = read_all(&mut s, Json::Null).unwrap();
    assert_eq!(pages, 4);
    assert_eq!(ids, (0..12).map(|i| format!("k{i}")).collect::<Vec<_>>());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|l| l.ends_with("Authorization: Bearer s3cret")), "{seen:?}");
    assert!(seen[3].starts_with("GET /items?page=3 "), "{seen:?}");
    // an API that is down: a transient error (the engine retries from the last commit)
    drop(seen);
    let down = json!({"name": "api", "stream": "items", "base_url": "http://127.0.0.1:9",
        "authentication": {"type": "bearer", "params": {"token": "s3cret"}}});
    let e = read_all(&mut source(&file, "items", down), Json::Null).unwrap_err();
    assert_eq!(e.kind(), bizon_core::ErrorKind::Transient, "{}", e.message());
    assert!(!e.message().contains("s3cret"), "{}", e.message());
}

#[test]
fn every_file_of_the_stand_in_package_is_shipped() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sources/python/shim");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "py") {
                on_disk.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    on_disk.sort();
    let mut shipped: Vec<String> = SHIM.iter().map(|(p, _)| (*p).to_owned()).collect();
    shipped.sort();
    assert_eq!(on_disk, shipped, "list every file of shim/ in SHIM");
}

#[test]
fn a_custom_source_config_keeps_its_own_keys_and_its_own_name() {
    let dir = bizon_testkit::fixtures::TempDir::new("pysrc-cfg");
    let file = write(&dir, "gen.py", GENERATOR);
    let no_env = |_: &str| None;
    let text = format!(
        "name: p\nsource:\n  name: gen\n  stream: records\n  source_file_path: {file}\n  total: 7\n  nested: {{a: 1}}\n\
         destination:\n  name: logger\n  config: {{}}\n"
    );
    let cfg = crate::load(&text, &no_env).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.stream_key().source, "gen", "jobs are keyed by the custom source's name, as in bizon");
    let mut s = cfg.build_source();
    assert_eq!(s.total_records(&ReadContext::default()).unwrap(), Some(7));
    // --custom-source sets the file of a config that has none
    let plain = text.replace(&format!("  source_file_path: {file}\n"), "");
    let options = crate::LoadOptions { custom_source: Some(file.clone()), ..Default::default() };
    let cfg = crate::load_with(&plain, &no_env, options).unwrap();
    assert_eq!(cfg.source.source_file_path.as_deref(), Some(file.as_str()));
    let e = crate::load(
        &plain.replace("  total: 7\n", &format!("  total: 7\n  source_file_path: {file}.missing\n")),
        &no_env,
    )
    .unwrap_err();
    assert!(e.message.contains("no such file") && e.path == "source.source_file_path", "{e:?}");
}
