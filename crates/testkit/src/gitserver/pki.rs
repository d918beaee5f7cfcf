//! A private certificate authority, made with the `openssl` command line.
//!
//! `openssl` is on every test machine (scripts/setup installs it) and keeps the dependency tree free
//! of a certificate generator. Every invocation uses a configuration file written here
//! (`OPENSSL_CONF` and `-config`), so the machine's `openssl.cnf` never changes what is generated.
//!
//! Keys are ECDSA P-256 (fast to generate; accepted by Go's crypto/tls, GnuTLS as used by git's
//! libcurl, and rustls). Server certificates carry the host names and IP addresses as
//! subjectAltName entries: Go ignores the Common Name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;

/// A CA key and self-signed certificate in a private temporary directory.
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
    name: String,
    serial: AtomicU64,
}

/// A server certificate and its key, issued by a [`TestCa`] (PEM files in their own temp dir).
#[derive(Debug)]
pub struct ServerCert {
    dir: TempDir,
}

impl TestCa {
    /// Generates a CA called `common_name`, valid for ten years from now.
    ///
    /// # Panics
    /// When `openssl` is missing or fails.
    pub fn new(common_name: &str) -> TestCa {
        let dir = crate::scratch::tempdir("agora-ca-");
        let cnf = dir.path().join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
                 [dn]\nCN = {common_name}\nO = agora-testkit\n\
                 [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
                 keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
            ),
        )
        .expect("write CA openssl config");
        let key = dir.path().join("ca.key");
        let crt = dir.path().join("ca.crt");
        let mut cmd = openssl(&cnf);
        cmd.args(["req", "-x509", "-new", "-config"])
            .arg(&cnf)
            .args(P256)
            .args(["-nodes", "-days", "3650", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt);
        run(cmd);
        TestCa {
            dir,
            name: common_name.to_string(),
            serial: AtomicU64::new(1),
        }
    }

    /// The CA certificate (PEM): what clients must trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Issues a server certificate for `dns_names` and `ips` (at least one name), valid for two
    /// years from now, with `extendedKeyUsage = serverAuth`.
    pub fn issue(&self, dns_names: &[&str], ips: &[IpAddr]) -> ServerCert {
        assert!(
            !dns_names.is_empty(),
            "a server certificate needs a DNS name"
        );
        let dir = crate::scratch::tempdir("agora-cert-");
        let san: Vec<String> = dns_names
            .iter()
            .map(|n| format!("DNS:{n}"))
            .chain(ips.iter().map(|ip| format!("IP:{ip}")))
            .collect();
        let cnf = dir.path().join("server.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n\
                 [dn]\nCN = {}\nO = agora-testkit\n\
                 [v3_srv]\nbasicConstraints = critical, CA:FALSE\n\
                 keyUsage = critical, digitalSignature, keyEncipherment\n\
                 extendedKeyUsage = serverAuth\nsubjectAltName = {}\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
                dns_names[0],
                san.join(", ")
            ),
        )
        .expect("write server openssl config");
        let key = dir.path().join("server.key");
        let csr = dir.path().join("server.csr");
        let crt = dir.path().join("server.crt");
        let mut cmd = openssl(&cnf);
        cmd.args(["req", "-new", "-config"])
            .arg(&cnf)
            .args(P256)
            .args(["-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr);
        run(cmd);
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        let mut cmd = openssl(&cnf);
        cmd.args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(self.cert_path())
            .arg("-CAkey")
            .arg(self.dir.path().join("ca.key"))
            .args(["-set_serial", &serial.to_string(), "-days", "730"])
            .arg("-extfile")
            .arg(&cnf)
            .args(["-extensions", "v3_srv", "-out"])
            .arg(&crt);
        run(cmd);
        ServerCert { dir }
    }
}

impl ServerCert {
    /// The certificate (PEM).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The private key (PEM, PKCS#8).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn openssl(cnf: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.env("OPENSSL_CONF", cnf);
    cmd
}

fn run(mut cmd: Command) {
    let desc = crate::go::describe(&cmd);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {desc}: {e} (is openssl installed? run scripts/setup)")
    });
    assert!(
        out.status.success(),
        "{desc} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
