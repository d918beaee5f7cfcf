//! `agora token`: issue, list and revoke client tokens in the tokens file. A running server picks
//! the changes up by itself (it polls the file), so revocation needs no restart. The logic lives
//! in `agora-access`; this is the command line around it.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use agora_access::TokenFile;

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Issue a token and print its secret (shown this once only).
    Add {
        /// Who the token is for, e.g. ci-payments or alice@corp.example.
        name: String,
        /// A group the access rules can grant access to (repeatable).
        #[arg(long = "group", short = 'g', value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// List issued tokens (never their secrets or hashes).
    List,
    /// Revoke a token by name or id.
    Revoke { name_or_id: String },
}

pub fn run(cmd: &TokenCommand, file: &Path, out: &mut impl Write) -> Result<()> {
    let mut tokens = TokenFile::load(file)?;
    match cmd {
        TokenCommand::Add { name, groups } => {
            let secret = tokens.add(name, groups)?;
            tokens.save(file)?;
            let groups = if groups.is_empty() {
                "none".to_owned()
            } else {
                groups.join(", ")
            };
            writeln!(out, "token for {name} (groups: {groups}): {secret}")?;
            writeln!(
                out,
                "Go clients send it from ~/.netrc:\n  machine <agora host> login {name} password {secret}"
            )?;
            writeln!(
                out,
                "or, with Go 1.24+, from a file through GOAUTH (see `agora auth --help`):\n  GOAUTH='agora auth --url https://<agora host> --token-file FILE'"
            )?;
            writeln!(
                out,
                "Only its hash is stored; it cannot be shown again. Keep it now."
            )?;
        }
        TokenCommand::List => {
            let list = tokens.list();
            if list.is_empty() {
                writeln!(out, "no tokens in {}", file.display())?;
                return Ok(());
            }
            let name_width = list.iter().map(|t| t.name.len()).max().unwrap_or(0).max(4);
            let groups: Vec<String> = list.iter().map(|t| t.groups.join(",")).collect();
            let groups_width = groups.iter().map(String::len).max().unwrap_or(0).max(6);
            writeln!(
                out,
                "{:<12}  {:<name_width$}  {:<groups_width$}  CREATED",
                "ID", "NAME", "GROUPS"
            )?;
            for (t, groups) in list.iter().zip(&groups) {
                writeln!(
                    out,
                    "{:<12}  {:<name_width$}  {:<groups_width$}  {}",
                    t.id, t.name, groups, t.created
                )?;
            }
        }
        TokenCommand::Revoke { name_or_id } => {
            if !tokens.revoke(name_or_id) {
                bail!(
                    "no token named {name_or_id:?} or with that id in {}",
                    file.display()
                );
            }
            tokens.save(file)?;
            writeln!(
                out,
                "revoked {name_or_id}; a running server stops accepting it within its reload interval"
            )?;
        }
    }
    out.flush().context("writing output")?;
    Ok(())
}
