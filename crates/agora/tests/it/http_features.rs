//! HTTP serving details through the real binary: validators and conditional GET, byte ranges on
//! zips, compression of text answers, `/metrics`, and slow clients that must not starve others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use agora_testkit::fixtures::{BIG, GREET};
use agora_testkit::http;

use crate::support::*;

/// A module only this test's upstream knows, with a version list long enough to be compressed.
const MANY: &str = "example.com/many";

fn many_list() -> String {
    (0..40).map(|i| format!("v1.{i}.0\n")).collect()
}

/// `module@version` of the bigzip fixture (1 MiB of incompressible data in its zip).
fn big_version() -> String {
    world()
        .baseline
        .keys()
        .find_map(|q| q.strip_prefix(&format!("{BIG}@")))
        .expect("bigzip fixture")
        .to_owned()
}

fn greet_version() -> String {
    world()
        .baseline
        .keys()
        .filter_map(|q| q.strip_prefix(&format!("{GREET}@")))
        .next()
        .expect("greet fixture")
        .to_owned()
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[test]
fn artifacts_have_validators_and_conditional_gets_answer_304() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let v = greet_version();
    let paths = [
        artifact_path(GREET, &v, "info"),
        artifact_path(GREET, &v, "mod"),
        artifact_path(GREET, &v, "zip"),
        format!("/{GREET}/@v/list"),
    ];
    for path in &paths {
        let url = format!("{}{path}", agora.url());
        let (status, h, body) = http::get(&url);
        assert_eq!(status, 200, "{path}: {}", http::text(&body));
        let etag = header(&h, "etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"))
            .to_owned();
        let lm = header(&h, "last-modified")
            .unwrap_or_else(|| panic!("{path}: no Last-Modified"))
            .to_owned();
        let cache_control = header(&h, "cache-control").unwrap().to_owned();
        if path.ends_with(".zip") || path.ends_with(".info") || path.ends_with(".mod") {
            assert!(
                cache_control.contains("immutable"),
                "{path}: {cache_control}"
            );
        } else {
            assert!(
                cache_control.contains("max-age=60"),
                "{path}: {cache_control}"
            );
        }

        for (name, value) in [
            ("if-none-match", etag.as_str()),
            ("if-modified-since", lm.as_str()),
        ] {
            for method in ["GET", "HEAD"] {
                let (status, h304, body) = http::request(method, &url, &[(name, value)], None);
                assert_eq!(status, 304, "{method} {path} {name}: {value}");
                assert!(body.is_empty(), "{path}: 304 with a body");
                assert_eq!(header(&h304, "etag"), Some(etag.as_str()), "{path}");
                assert_eq!(
                    header(&h304, "cache-control"),
                    Some(cache_control.as_str()),
                    "{path}: 304s keep Cache-Control"
                );
            }
        }
        let (status, _, again) = http::get_with(&url, &[("if-none-match", "\"something-else\"")]);
        assert_eq!(status, 200, "{path}");
        assert_eq!(again, body, "{path}");
    }
}

#[test]
fn zip_ranges_match_slices_of_the_full_zip() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let url = format!(
        "{}{}",
        agora.url(),
        artifact_path(BIG, &big_version(), "zip")
    );
    let (status, h, full) = http::get(&url);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "accept-ranges"), Some("bytes"));
    let len = full.len();
    assert!(len > 1 << 20, "bigzip is over 1 MiB ({len})");

    for (range, start, end) in [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, len),
        ("bytes=-22", len - 22, len), // the end-of-central-directory record
        (
            &format!("bytes={}-{}", len / 2, len / 2 + 65_535) as &str,
            len / 2,
            len / 2 + 65_536,
        ),
    ] {
        let (status, h, part) = http::get_with(&url, &[("range", range)]);
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            header(&h, "content-range"),
            Some(format!("bytes {start}-{}/{len}", end - 1).as_str()),
            "{range}"
        );
        assert!(
            part == full[start..end],
            "{range}: bytes differ from the full zip's slice"
        );
        let (status, hh, body) = http::request("HEAD", &url, &[("range", range)], None);
        assert_eq!(status, 206);
        assert!(body.is_empty());
        assert_eq!(header(&hh, "content-length"), header(&h, "content-length"));
        assert_eq!(header(&hh, "content-range"), header(&h, "content-range"));
    }
    let (status, h, body) = http::get_with(&url, &[("range", &format!("bytes={len}-"))]);
    assert_eq!(status, 416);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(body.is_empty());
}

#[test]
fn text_answers_are_gzipped_on_request_and_zips_never() {
    let up = upstream();
    up.add_file(&format!("/{MANY}/@v/list"), many_list(), "text/plain");
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let v = greet_version();
    let gz = [("accept-encoding", "gzip")];
    for path in [format!("/{MANY}/@v/list"), artifact_path(GREET, &v, "mod")] {
        let url = format!("{}{path}", agora.url());
        let (status, h, plain) = http::get(&url);
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&h, "content-encoding"),
            None,
            "{path}: identity unless asked"
        );
        let (status, h, body) = http::get_with(&url, &gz);
        assert_eq!(status, 200, "{path}");
        if plain.len() > 32 {
            assert_eq!(header(&h, "content-encoding"), Some("gzip"), "{path}");
            assert_eq!(&body[..2], b"\x1f\x8b", "{path}: a gzip stream");
            assert_ne!(body, plain);
        }
        assert_eq!(header(&h, "vary"), Some("accept-encoding"), "{path}");
    }
    let url = format!(
        "{}{}",
        agora.url(),
        artifact_path(BIG, &big_version(), "zip")
    );
    let (status, h, body) = http::get_with(&url, &[("accept-encoding", "gzip, br")]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "content-encoding"),
        None,
        "zips are never re-compressed"
    );
    assert_eq!(
        header(&h, "content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[test]
fn metrics_count_requests_by_route_and_status() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let v = greet_version();
    let info = format!("{}{}", agora.url(), artifact_path(GREET, &v, "info"));
    assert_eq!(http::get(&info).0, 200);
    assert_eq!(http::get(&info).0, 200);
    let zip = format!("{}{}", agora.url(), artifact_path(GREET, &v, "zip"));
    assert_eq!(http::get_with(&zip, &[("range", "bytes=0-9")]).0, 206);
    assert_eq!(
        http::get(&format!("{}/example.com/m/@v/v1.0.0.tar", agora.url())).0,
        404
    );

    let (status, h, body) = http::get(&format!("{}/metrics", agora.url()));
    assert_eq!(status, 200);
    assert!(header(&h, "content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = http::text(&body);
    for line in [
        "agora_http_requests_total{route=\"info\",status=\"200\"} 2",
        "agora_http_requests_total{route=\"zip\",status=\"206\"} 1",
        "agora_http_requests_total{route=\"other\",status=\"404\"} 1",
        "agora_http_response_bytes_total{route=\"zip\"} 10",
        "agora_cache_lookups_total{kind=\"info\",result=\"hit\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// 50 clients trickling request headers one byte at a time hold connections open; a normal client
/// is still answered at once. (That the slow ones are cut off after the header timeout is tested in
/// `agora-server` with a short timeout.)
#[test]
fn slow_header_clients_do_not_starve_normal_requests() {
    let up = upstream();
    let data = tempfile::tempdir().unwrap();
    let agora = start(data.path(), &up.url());
    let addr = agora.url().trim_start_matches("http://").to_owned();
    let v = greet_version();
    let info = format!("{}{}", agora.url(), artifact_path(GREET, &v, "info"));
    assert_eq!(http::get(&info).0, 200, "warm the cache");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
                for b in &head[..head.len() - 4] {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(http::get(&info).0, 200);
        let (status, _) = raw_request(agora.url(), "GET", "/healthz");
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "slow: {:?}",
            t.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in slow {
        t.join().unwrap();
    }
    // Nothing in a slow client's partial head reached a handler.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
