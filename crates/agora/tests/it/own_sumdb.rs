//! agora's own checksum database: the real go command (1.27 and 1.23) verifies private and
//! public modules against it with `GOSUMDB` set to its key and no `GONOSUMDB`; its records, tree
//! hash and tiles equal those of the Go reference implementation (`golang.org/x/mod/sumdb`)
//! given the same records in the same order; a tag moved in git after first use is refused
//! naming both hashes; `agora sumdb verify` accepts the log and finds a tampered tile.

use agora_testkit::fixtures::GREET;
use agora_testkit::{http, Agora, GitHost, GoClient, HttpsGitServer, SumdbServer};

use crate::support::*;

const H: &str = "git.corp.test";
const DB: &str = "sum.agora.test";

/// The go command with agora's database as its only checksum database.
fn go_with(client: GoClient, vkey: &str) -> GoClient {
    client
        .env("GOSUMDB", vkey)
        .env("GONOSUMDB", "")
        .env("GOPRIVATE", "")
        .env("GONOPROXY", "")
}

fn get(agora: &Agora, path: &str) -> (u16, Vec<u8>) {
    let (s, _, body) = http::get(&format!("{}{path}", agora.url()));
    (s, body)
}

/// Lines 2 and 3 of a tree note: size and hash.
fn tree_of(note: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(note);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("go.sum database tree"), "{text}");
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

#[test]
fn the_go_command_verifies_private_and_public_modules_against_agoras_own_database() {
    let host = GitHost::new().host(H);
    let lib = format!("{H}/team/lib");
    let mut repo = host.repo(&lib);
    repo.write("go.mod", format!("module {lib}\n\ngo 1.21\n"))
        .write("lib.go", "package lib\n\nconst V = 1\n");
    repo.commit("one");
    repo.tag("v1.0.0");
    repo.write("lib.go", "package lib\n\nconst V = 2\n");
    repo.commit("two");
    repo.tag("v1.1.0");
    let srv = HttpsGitServer::serve(&host, H);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key_file = dir.join("sumdb.key");
    let init: Vec<std::ffi::OsString> = vec![
        "sumdb".into(),
        "init".into(),
        "--name".into(),
        DB.into(),
        "--key-file".into(),
        key_file.clone().into_os_string(),
    ];
    let (ok, out) = agora_cmd(&init);
    assert!(ok, "{out}");
    let vkey = out
        .lines()
        .find(|l| l.starts_with(&format!("{DB}+")))
        .unwrap_or_else(|| panic!("no verifier key in {out}"))
        .to_owned();
    assert!(
        !out.contains("PRIVATE"),
        "the signer key is never printed: {out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, again) = agora_cmd(&init);
    assert!(!ok && again.contains("never overwritten"), "{again}");

    let extra = format!(
        "\n[checksum_db]\nname = \"{DB}\"\nkey_file = {key_file:?}\n\n[index]\nsync_interval = \"200ms\"\n"
    );
    let config = gitlab_config(dir, &srv, &[H], &extra);
    let up = upstream();
    let agora = private_agora(
        dir,
        &config,
        &up.url(),
        &[("AGORA_GIT_REFRESH_INTERVAL", "0s".into())],
    );

    // The web UI tells developers the GOSUMDB line.
    let (_, home) = get(&agora, "/");
    let home = String::from_utf8_lossy(&home);
    assert!(home.contains(&format!("GOSUMDB={vkey}")), "{home}");
    assert!(!home.contains("GONOSUMDB="), "{home}");

    // Go 1.27 and Go 1.23, each with an empty module cache.
    let w = world();
    for (client, private, public) in [
        (go_client(), "v1.0.0", "v1.1.0"),
        (
            GoClient::oldest().gitconfig(w.host.gitconfig_path()),
            "v1.1.0",
            "v1.0.0",
        ),
    ] {
        let go = go_with(client, &vkey);
        go.mod_download(agora.url(), &format!("{lib}@{private}"))
            .unwrap_or_else(|e| panic!("{lib}@{private}: {e}\n{}", agora.stderr_log()));
        let q = format!("{GREET}@{public}");
        let got = go
            .mod_download(agora.url(), &q)
            .unwrap_or_else(|e| panic!("{q}: {e}\n{}", agora.stderr_log()));
        if let Some(want) = w.baseline.get(&q) {
            assert_eq!(got.sum, want.sum, "{q}");
        }
    }

    // The signed tree head verifies with the key clients were given.
    let (s, latest) = get(&agora, &format!("/sumdb/{DB}/latest"));
    assert_eq!(s, 200);
    let db = agora_sumdb::Database::parse(&vkey).unwrap().unwrap();
    let tree = agora_sumdb::tree::open(&db, &latest).unwrap();
    assert_eq!(tree.n, 4, "four versions were looked up");

    // The Go reference, given the same records in the same order, builds the same log.
    let (s, data) = get(&agora, &format!("/sumdb/{DB}/tile/8/data/000.p/4"));
    assert_eq!(s, 200);
    let records = agora_sumdb::record::data_tile_records(&data, 0, 4).unwrap();
    let reference = SumdbServer::start("ref.agora.test");
    let mut order = Vec::new();
    for r in &records {
        let text = String::from_utf8_lossy(r);
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        let (m, v) = (lines[0][0], lines[0][1]);
        reference.know(m, v, lines[0][2], lines[1][2]);
        order.push((m.to_owned(), v.to_owned()));
    }
    for (m, v) in &order {
        let path = format!(
            "{}/lookup/{}@{}",
            reference.url(),
            agora_gomod::module::escape_path(m).unwrap(),
            v
        );
        let (s, _, _) = http::get(&path);
        assert_eq!(s, 200, "{path}");
    }
    let (_, _, ref_latest) = http::get(&format!("{}/latest", reference.url()));
    assert_eq!(
        tree_of(&ref_latest),
        tree_of(&latest),
        "same size and tree hash"
    );
    for tile in ["tile/8/0/000.p/4", "tile/8/data/000.p/4"] {
        let (_, _, theirs) = http::get(&format!("{}/{tile}", reference.url()));
        let (_, ours) = get(&agora, &format!("/sumdb/{DB}/{tile}"));
        assert_eq!(ours, theirs, "{tile}");
    }
    let (m0, v0) = &order[0];
    let (_, _, ref_lookup) = http::get(&format!(
        "{}/lookup/{}@{v0}",
        reference.url(),
        agora_gomod::module::escape_path(m0).unwrap()
    ));
    let (_, our_lookup) = get(
        &agora,
        &format!(
            "/sumdb/{DB}/lookup/{}@{v0}",
            agora_gomod::module::escape_path(m0).unwrap()
        ),
    );
    let theirs = agora_sumdb::record::parse(&ref_lookup).unwrap();
    let ours = agora_sumdb::record::parse(&our_lookup).unwrap();
    assert_eq!((ours.id, ours.text), (theirs.id, theirs.text));
    // Tiles outside the published tree do not exist.
    assert_eq!(get(&agora, &format!("/sumdb/{DB}/tile/8/0/000.p/5")).0, 404);

    // The log verifies, and can be exported for an auditor.
    let (ok, out) = agora_in(dir, &["sumdb", "verify"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("tree of 4 records") && out.contains(", 0 differ"),
        "{out}"
    );
    let export = dir.join("export");
    let (ok, out) = agora_in(dir, &["sumdb", "export", export.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(export.join("latest").is_file() && export.join("tile/8/0/000.p/4").is_file());

    // What a replica killed in the middle of an append leaves (tiles and a lookup entry beyond
    // the published tree) is invisible, the log still verifies, and the next append writes
    // over it.
    let own = dir.join(format!("data/_agora/checksum-db/{DB}"));
    std::fs::write(own.join("tile/8/0/000.p/5"), [0u8; 5 * 32]).unwrap();
    std::fs::create_dir_all(own.join("tile/8/data")).unwrap();
    std::fs::write(own.join("tile/8/data/000.p/5"), b"garbage\n\n").unwrap();
    let stray = own.join(format!(
        "lookup/{}@v1.2.0-rc.1",
        agora_gomod::module::escape_path(GREET).unwrap()
    ));
    std::fs::write(&stray, b"4").unwrap();
    assert_eq!(get(&agora, &format!("/sumdb/{DB}/tile/8/0/000.p/5")).0, 404);
    let (ok, out) = agora_in(dir, &["sumdb", "verify"]);
    assert!(ok && out.contains("tree of 4 records"), "{out}");
    let go = go_with(go_client(), &vkey);
    go.mod_download(agora.url(), &format!("{GREET}@v1.2.0-rc.1"))
        .unwrap_or_else(|e| panic!("after a crashed append: {e}\n{}", agora.stderr_log()));
    let (_, latest) = get(&agora, &format!("/sumdb/{DB}/latest"));
    assert_eq!(agora_sumdb::tree::open(&db, &latest).unwrap().n, 5);
    let (ok, out) = agora_in(dir, &["sumdb", "verify"]);
    assert!(ok && out.contains("tree of 5 records"), "{out}");

    // A tag moved after first use: agora computes different bytes, refuses them naming both
    // hashes, and the go command gets no module.
    repo.write("lib.go", "package lib\n\nconst V = 666\n");
    let moved = repo.commit("moved");
    repo.git(["tag", "-f", "v1.0.0", moved.as_str()]);
    let (ok, out) = agora_in(dir, &["rm", &format!("{lib}@v1.0.0")]);
    assert!(ok, "{out}");
    let (s, body) = get(&agora, &artifact_path(&lib, "v1.0.0", "zip"));
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("checksum mismatch") && body.contains(DB),
        "{body}"
    );
    let recorded = agora_sumdb::record::hash_for(
        &records
            .iter()
            .find(|r| r.starts_with(format!("{lib} v1.0.0 ").as_bytes()))
            .unwrap()[..],
        &lib,
        "v1.0.0",
        "",
    )
    .unwrap()
    .to_owned();
    assert!(body.contains(&recorded), "names the recorded hash: {body}");
    let go = go_with(go_client(), &vkey);
    let err = go
        .mod_download(agora.url(), &format!("{lib}@v1.0.0"))
        .unwrap_err();
    assert!(
        err.message().contains("checksum mismatch") || err.message().contains("SECURITY ERROR"),
        "{}",
        err.message()
    );

    // A tampered tile is found.
    let tile = own.join("tile/8/data/000.p/5");
    let text = std::fs::read_to_string(&tile).unwrap();
    std::fs::write(&tile, text.replacen("h1:", "h1:X", 1)).unwrap();
    let (ok, out) = agora_in(dir, &["sumdb", "verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    drop(srv);
}
