//! Checksum-database passthrough: `supported`, lookups, tiles (cached), and private paths refused
//! locally.

use agora_testkit::http;

use crate::support::*;

#[test]
fn checksum_database_is_proxied_and_private_lookups_never_leave() {
    let up = upstream();
    let db = "/sumdb/sum.golang.org";
    let lookup_body =
        "12345\ngithub.com/agora-fixtures/greet v1.0.0 h1:abc=\n\ngo.sum database tree\n";
    up.add_file(
        &format!("{db}/lookup/github.com/agora-fixtures/greet@v1.0.0"),
        lookup_body,
        "text/plain; charset=UTF-8",
    );
    let tile: Vec<u8> = (0u8..=255).collect();
    up.add_file(
        &format!("{db}/tile/8/0/000"),
        tile.clone(),
        "application/octet-stream",
    );
    up.add_file(
        &format!("{db}/latest"),
        "go.sum database tree\n1\n",
        "text/plain; charset=UTF-8",
    );

    let data = tempfile::tempdir().unwrap();
    let agora = builder(data.path(), &up.url())
        .env("AGORA_SUMDB_URL", format!("{}{db}", up.url()))
        .env("AGORA_ROUTING_NOSUMDB", "gitlab.corp.example")
        .start();
    let base = agora.url();

    assert_eq!(http::get(&format!("{base}{db}/supported")).0, 200);
    assert_eq!(
        http::get(&format!("{base}/sumdb/sum.other.example/supported")).0,
        404
    );

    let (s, h, body) = http::get(&format!(
        "{base}{db}/lookup/github.com/agora-fixtures/greet@v1.0.0"
    ));
    assert_eq!(s, 200);
    assert_eq!(http::text(&body), lookup_body, "passed through unchanged");
    assert_eq!(h["content-type"], "text/plain; charset=UTF-8");

    for _ in 0..2 {
        let (s, h, body) = http::get(&format!("{base}{db}/tile/8/0/000"));
        assert_eq!(s, 200);
        assert_eq!(body, tile);
        assert_eq!(h["content-type"], "application/octet-stream");
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    }
    assert_eq!(
        up.count(&format!("{db}/tile/8/0/000")),
        1,
        "tiles are cached"
    );
    assert_eq!(http::get(&format!("{base}{db}/latest")).0, 200);

    up.reset_counts();
    let (s, _, body) = http::get(&format!(
        "{base}{db}/lookup/gitlab.corp.example/team/svc@v1.0.0"
    ));
    assert_eq!(s, 404, "{}", http::text(&body));
    assert!(
        http::text(&body).contains("private"),
        "{}",
        http::text(&body)
    );
    assert!(
        up.requests().is_empty(),
        "a private path leaked upstream: {:?}",
        up.requests()
    );

    // Unknown paths under a configured database are refused, not forwarded.
    assert_eq!(
        raw_request(base, "GET", &format!("{db}/tile/8/0/x/../000")).0,
        400
    );
    assert_eq!(http::get(&format!("{base}{db}/tile/8/0/00")).0, 404);
    assert_eq!(http::get(&format!("{base}{db}/admin")).0, 404);
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}
