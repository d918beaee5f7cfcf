//! `agora import`: a Go module cache and an Athens disk storage loaded into agora's storage, each
//! artifact verified, then served to the go command with its own hashes and no upstream at all.

use std::path::Path;

use crate::support::*;

/// `agora import DIR --data DATA`, verifying against the tests' checksum database.
fn import(data: &Path, dir: &Path) -> (bool, String) {
    import_with(data, dir, &world().sumdb.gosumdb())
}

fn import_with(data: &Path, dir: &Path, gosumdb: &str) -> (bool, String) {
    agora_cmd_with(
        [
            "import".as_ref(),
            dir.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
        ],
        &[("GOSUMDB", gosumdb)],
    )
}

/// Every baseline version downloads through an agora that has no upstream (`off`), with the hashes
/// the go command computed from git.
fn serves_the_baseline_without_upstream(data: &Path) {
    let agora = start(data, "off");
    let go = go_client().env("GOSUMDB", "off");
    for (q, want) in &world().baseline {
        let got = go
            .mod_download(agora.url(), q)
            .unwrap_or_else(|e| panic!("{q} after import: {e}"));
        assert_eq!(got.sum, want.sum, "{q}");
        assert_eq!(got.go_mod_sum, want.go_mod_sum, "{q}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn import_a_go_module_cache_verifying_every_zip() {
    let tmp = tempfile::tempdir().unwrap();
    // A copy of the module cache (GOMODCACHE), with one zip corrupted.
    let cache = tmp.path().join("gomodcache");
    std::fs::create_dir_all(cache.join("cache/download")).unwrap();
    copy_tree(&world().go.download_cache(), &cache.join("cache/download"));
    let data = tmp.path().join("data");
    let (ok, out) = import(&data, &cache);
    assert!(ok, "{out}");
    let n = world().baseline.len();
    assert!(out.contains(&format!("{n} versions")), "{out}");
    // Off a terminal, progress is plain lines on stderr, ending with the whole count.
    assert!(out.contains("module versions (100%)\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("import: ") && l.ends_with("%)")),
        "{out}"
    );
    serves_the_baseline_without_upstream(&data);

    // Export writes a GOPROXY tree the go command uses directly.
    let exported = tmp.path().join("exported");
    let (ok, out) = agora_cmd([
        "export".as_ref(),
        exported.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("stored objects (100%)\n"), "{out}");
    let go = go_client().env("GOSUMDB", "off");
    let file_proxy = format!("file://{}", exported.display());
    for (q, want) in &world().baseline {
        let got = go
            .mod_download(&file_proxy, q)
            .unwrap_or_else(|e| panic!("{q} from the export: {e}"));
        assert_eq!(got.sum, want.sum, "{q}");
    }
    let list =
        std::fs::read_to_string(exported.join("github.com/agora-fixtures/greet/@v/list")).unwrap();
    assert_eq!(list, "v1.0.0\nv1.1.0\nv1.2.0-rc.1\n");
    assert!(!files_under(&exported)
        .iter()
        .any(|f| f.contains("agora-tmp") || f.starts_with("_agora")));

    // Importing again changes nothing.
    let (ok, out) = import(&data, &cache);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 artifacts stored"), "{out}");

    // A zip that is another version's is rejected (wrong prefix), and so is a truncated one; the
    // command fails.
    let v = cache.join("cache/download/github.com/agora-fixtures/greet/@v");
    std::fs::copy(v.join("v1.0.0.zip"), v.join("v1.1.0.zip")).unwrap();
    let big = cache.join("cache/download/github.com/agora-fixtures/bigzip/@v/v1.0.0.zip");
    let bytes = std::fs::read(&big).unwrap();
    std::fs::write(&big, &bytes[..bytes.len() - 100]).unwrap();
    let fresh = tmp.path().join("fresh");
    let (ok, out) = import(&fresh, &cache);
    assert!(!ok, "{out}");
    assert!(
        out.contains("rejected github.com/agora-fixtures/greet@v1.1.0"),
        "{out}"
    );
    assert!(
        out.contains("rejected github.com/agora-fixtures/bigzip@v1.0.0"),
        "{out}"
    );
    assert!(
        !fresh
            .join("github.com/agora-fixtures/greet/@v/v1.1.0.zip")
            .exists(),
        "a rejected version is not stored"
    );
    assert!(fresh
        .join("github.com/agora-fixtures/greet/@v/v1.0.0.zip")
        .exists());
}

/// A module cache can hold what no checksum database vouches for (a cache filled with
/// `GONOSUMDB`, or tampered with on disk): public versions are checked before they are imported.
#[test]
fn import_refuses_public_versions_the_checksum_database_does_not_vouch_for() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("gomodcache");
    std::fs::create_dir_all(cache.join("cache/download")).unwrap();
    copy_tree(&world().go.download_cache(), &cache.join("cache/download"));
    // A database that knows greet v1.0.0 only, with another go.mod hash than the cache's.
    let db = agora_testkit::SumdbServer::start("sumdb.agora.test");
    let greet = agora_testkit::fixtures::GREET;
    let real = &world().baseline[&format!("{greet}@v1.0.0")];
    db.know(
        greet,
        "v1.0.0",
        real.sum.as_deref().unwrap(),
        "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let data = tmp.path().join("data");
    let (ok, out) = import_with(&data, &cache, &db.gosumdb());
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("rejected {greet}@v1.0.0")) && out.contains("checksum mismatch"),
        "{out}"
    );
    assert!(out.contains("not found in checksum database"), "{out}");
    assert_eq!(
        files_under(&data)
            .iter()
            .filter(|f| f.ends_with(".mod") || f.ends_with(".zip"))
            .count(),
        0,
        "{:?}",
        files_under(&data)
    );
}

#[test]
fn import_an_athens_disk_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let athens = tmp.path().join("athens");
    let cache = world().go.download_cache();
    for q in world().baseline.keys() {
        let (module, version) = q.rsplit_once('@').unwrap();
        let escaped = agora_gomod::module::escape_path(module).unwrap();
        let src = cache.join(&escaped).join("@v");
        let ev = agora_gomod::module::escape_version(version).unwrap();
        // Athens keeps the module path as it is (upper case included).
        let dst = athens.join(module).join(version);
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::copy(src.join(format!("{ev}.mod")), dst.join("go.mod")).unwrap();
        std::fs::copy(src.join(format!("{ev}.zip")), dst.join("source.zip")).unwrap();
        std::fs::copy(
            src.join(format!("{ev}.info")),
            dst.join(format!("{version}.info")),
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    let (ok, out) = import(&data, &athens);
    assert!(ok, "{out}");
    assert!(out.contains("Athens"), "{out}");
    serves_the_baseline_without_upstream(&data);
}
