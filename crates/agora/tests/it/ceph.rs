//! agora on a real S3 server: Ceph RGW 16.2 (the test kit's single-node cluster). With the
//! default way of publishing large files agora refuses to start on it, saying what to set; with
//! `large_files = "single_put"` the go client downloads a private module whose zip is larger than
//! a part, published as one conditional `PutObject`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora_storage::remote::PART_SIZE;
use agora_testkit::{HttpsGitServer, RgwServer, S3Service};

use crate::support::*;

const H: &str = "git-ceph.corp.test";

/// `agora serve` with `config`, expected to exit by itself: its status and stderr.
fn serve_to_exit(dir: &Path, config: &Path) -> (bool, String) {
    let mut child = Command::new(agora_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "off",
            "--data",
        ])
        .arg(dir.join("refused"))
        .arg("--config")
        .arg(config)
        .env_remove("GOPROXY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("agora kept running on a store whose conditional copy fails");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

#[test]
fn agora_serves_from_ceph_rgw_with_single_put_and_refuses_the_default() {
    let rgw = RgwServer::shared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let refused = dir.join("refused.toml");
    std::fs::write(&refused, s3_storage_toml(rgw, &rgw.new_bucket())).unwrap();
    let (ok, stderr) = serve_to_exit(dir, &refused);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("conditional copy") && stderr.contains("large_files = \"single_put\""),
        "the refusal names the setting: {stderr}"
    );
    assert!(!stderr.contains(rgw.secret_access_key()), "{stderr}");

    // A private module whose zip is larger than one part: incompressible bytes.
    let (host, module, mut repo) = team_lib(H);
    let mut blob = Vec::with_capacity(PART_SIZE + (1 << 20));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while blob.len() < PART_SIZE + (1 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    repo.write("blob.bin", &blob);
    repo.commit("big");
    repo.tag("v1.1.0");
    let srv = HttpsGitServer::serve(&host, H);
    let bucket = rgw.new_bucket();
    let config = gitlab_config(
        dir,
        &srv,
        &[H],
        &format!(
            "{}large_files = \"single_put\"\n",
            s3_storage_toml(rgw, &bucket)
        ),
    );
    let agora = private_agora(dir, &config, "off", &[]);

    let go = go_client().env("GONOSUMDB", H);
    let got = go
        .mod_download(agora.url(), &format!("{module}@v1.1.0"))
        .unwrap_or_else(|e| panic!("{e}\n{}", agora.stderr_log()));
    let zip = std::fs::metadata(got.zip.as_deref().unwrap())
        .unwrap()
        .len();
    assert!(
        zip > PART_SIZE as u64,
        "the zip is larger than a part: {zip}"
    );

    // The second client gets the same bytes from the bucket (a hit), and no staging object was
    // left: the zip went in as one conditional put.
    let (status, _, body) = agora_testkit::http::get(&format!(
        "{}{}",
        agora.url(),
        artifact_path(&module, "v1.1.0", "zip")
    ));
    assert_eq!(status, 200);
    assert_eq!(body.len() as u64, zip);
    assert_eq!(body, std::fs::read(got.zip.as_deref().unwrap()).unwrap());
    let listed = rgw_keys(rgw, &bucket);
    assert!(
        listed.iter().any(|k| k.ends_with("/@v/v1.1.0.zip")),
        "{listed:?}"
    );
    assert!(
        !listed.iter().any(|k| k.starts_with("_agora/staging")),
        "{listed:?}"
    );
}

/// The keys of `bucket`, through the storage crate's own client.
fn rgw_keys(rgw: &RgwServer, bucket: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(rgw.endpoint())
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region(rgw.region())
        .with_access_key_id(rgw.access_key_id())
        .with_secret_access_key(rgw.secret_access_key())
        .build()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            store
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap()
        })
}
