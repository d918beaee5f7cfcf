//! `agora sumdb ...`: the checksum database of agora's own. `init` makes its key, `verify`
//! re-checks the whole log and the stored artifacts against it, `export` writes it out for an
//! auditor to mirror.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum SumdbCommand {
    /// Create a signing key for a new database and print its verifier key (the last line) for
    /// clients' GOSUMDB. The key file is created with mode 0600; the key is never printed.
    Init {
        /// The database's name, e.g. sum.corp.example.
        #[arg(long)]
        name: String,
        /// Where to write the signer key (must not exist).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Re-check the whole log: tiles and tree hash recomputed from the records, the signature,
    /// lookup entries, and every stored go.mod and zip against its record. Exits 1 on any
    /// difference.
    Verify {
        #[command(flatten)]
        config: crate::ConfigArgs,
    },
    /// Write the published log (`latest` and every tile) under DIR, in the layout clients fetch
    /// (`DIR/latest`, `DIR/tile/8/...`).
    Export {
        dir: PathBuf,
        #[command(flatten)]
        config: crate::ConfigArgs,
    },
}

pub fn init(name: &str, key_file: &Path) -> Result<()> {
    let (skey, vkey) = agora_sumdb::log::generate_key(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(key_file).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{} exists; a key is never overwritten", key_file.display())
        }
        _ => anyhow::Error::from(e).context(format!("creating {}", key_file.display())),
    })?;
    file.write_all(format!("{skey}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", key_file.display()))?;
    eprintln!(
        "agora: signer key written to {} (mode 0600): back it up; losing it means a new database name",
        key_file.display()
    );
    eprintln!("agora: set [checksum_db] name = {name:?} and key_file, and give clients GOSUMDB=");
    println!("{vkey}");
    Ok(())
}

fn db(app: &crate::app::App) -> Result<&agora_core::ChecksumDb> {
    app.proxy
        .checksum_db()
        .context("no [checksum_db] is configured (name and key_file or key_env)")
}

pub async fn verify(config: &Config, app: &crate::app::App) -> Result<bool> {
    let db = db(app)?;
    let (tree, entries) = match db.verify().await {
        Ok(v) => v,
        Err(e) => {
            println!("sumdb verify: FAILED: {e}");
            return Ok(false);
        }
    };
    let _ = config;
    let mut bad = 0;
    let mut checked = 0;
    for e in &entries {
        let key = agora_storage::StorageKey::artifact(
            &e.module,
            &e.version,
            agora_storage::ArtifactKind::Mod,
        );
        if let Some((body, _)) = app.storage.get_bytes(&key).await? {
            checked += 1;
            let h1 = agora_gomod::dirhash::hash_go_mod(&body);
            if h1 != e.mod_h1 {
                bad += 1;
                println!(
                    "sumdb verify: {}@{}/go.mod: stored {h1}, log {}",
                    e.module, e.version, e.mod_h1
                );
            }
        }
        let key = agora_storage::StorageKey::artifact(
            &e.module,
            &e.version,
            agora_storage::ArtifactKind::Zip,
        );
        if let Some(obj) = app.storage.get(&key).await? {
            checked += 1;
            let h1 = hash_object(obj).await?;
            if h1 != e.zip_h1 {
                bad += 1;
                println!(
                    "sumdb verify: {}@{}: stored zip {h1}, log {}",
                    e.module, e.version, e.zip_h1
                );
            }
        }
    }
    println!(
        "sumdb verify: {}: tree of {} records, hash {}, signature and tiles ok; {checked} stored artifacts checked, {bad} differ",
        db.name(),
        tree.n,
        tree.hash
    );
    Ok(bad == 0)
}

async fn hash_object(obj: agora_storage::Object) -> Result<String> {
    use futures::StreamExt;
    let mut body = obj.body;
    let mut bytes = Vec::with_capacity(obj.info.size as usize);
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    tokio::task::spawn_blocking(move || {
        agora_gomod::dirhash::hash_zip(std::io::Cursor::new(bytes))
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?
}

pub async fn export(app: &crate::app::App, dir: &Path) -> Result<()> {
    let db = db(app)?;
    let (tree, note) = db.published().await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    // Every full or partial tile of the published tree, at each level it reaches.
    let mut paths = Vec::new();
    let mut level: u8 = 0;
    loop {
        let count = tree.n >> (8 * u32::from(level));
        if count == 0 {
            break;
        }
        for n in 0..count.div_ceil(256) {
            if let Some(t) = agora_sumdb::log::tile_at(Some(level), n, tree.n) {
                paths.push(t.path());
            }
            if level == 0 {
                if let Some(t) = agora_sumdb::log::tile_at(None, n, tree.n) {
                    paths.push(t.path());
                }
            }
        }
        level += 1;
    }
    for path in paths {
        let body = db
            .tile(&path)
            .await?
            .with_context(|| format!("{path} is missing"))?;
        let out = dir.join(&path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&out, &body).with_context(|| format!("writing {}", out.display()))?;
        written += 1;
    }
    std::fs::write(dir.join("latest"), &note)?;
    if tree.n == 0 {
        bail!("the log is empty: nothing but an empty tree head to export");
    }
    println!(
        "sumdb export: {} records, {written} tiles and latest written to {}",
        tree.n,
        dir.display()
    );
    Ok(())
}
