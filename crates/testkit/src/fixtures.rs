//! A few small public modules under `github.com/agora-fixtures/...`, and a Go program using them.
//!
//! | module | versions | what it is for |
//! |---|---|---|
//! | [`GREET`] | `v1.0.0`, `v1.1.0`, `v1.2.0-rc.1` (annotated tag), then one untagged commit on `main` | lists, `@latest` (= `v1.1.0`), pre-releases, pseudo-versions (`v1.2.0-rc.1.0.<time>-<rev>` for `main`) |
//! | [`GREET_V2`] | `v2.0.0` on branch `v2` of the same repository (major-branch layout) | `/v2` paths |
//! | [`MIXED_CASE`] | `v1.0.0`, `v1.1.0-RC.1` | escaping (`!mixed!case`, `v1.1.0-!r!c.1`) |
//! | [`BIG`] | `v1.0.0` with a 1 MiB incompressible file (zip ≈ 1 MiB) | streaming |
//!
//! Every `go.mod` says `go 1.21`, so Go 1.23 accepts them all. Commit times are fixed (see
//! [`Repo`](crate::Repo)), so hashes and pseudo-versions are stable across runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

use crate::git::GitHost;

/// `github.com/agora-fixtures/greet`.
pub const GREET: &str = "github.com/agora-fixtures/greet";
/// `github.com/agora-fixtures/greet/v2`, from branch `v2` of the greet repository.
pub const GREET_V2: &str = "github.com/agora-fixtures/greet/v2";
/// `github.com/agora-fixtures/MixedCase` (escaped `github.com/agora-fixtures/!mixed!case`).
pub const MIXED_CASE: &str = "github.com/agora-fixtures/MixedCase";
/// `github.com/agora-fixtures/bigzip`: a module whose zip is about 1 MiB.
pub const BIG: &str = "github.com/agora-fixtures/bigzip";
/// Size of `data/blob.bin` in [`BIG`].
pub const BIG_BLOB_LEN: usize = 1 << 20;

/// The modules made by [`public_modules`].
#[derive(Debug)]
pub struct PublicFixtures {
    /// `"module@version"` → commit hash, for every tagged version.
    pub commits: BTreeMap<String, String>,
    /// The untagged commit at the tip of greet's `main` (its `@latest` is still `v1.1.0`; `@main`
    /// resolves to a pseudo-version based on `v1.2.0-rc.1`).
    pub greet_untagged: String,
    programs: TempDir,
    next_program: AtomicUsize,
}

impl PublicFixtures {
    /// `"module@version"` for every tagged version, e.g. for
    /// [`UpstreamProxy::from_fixtures`](crate::UpstreamProxy::from_fixtures).
    pub fn queries(&self) -> Vec<&str> {
        self.commits.keys().map(String::as_str).collect()
    }

    /// The commit of a tagged `"module@version"`.
    ///
    /// # Panics
    /// When there is no such fixture version.
    pub fn commit(&self, query: &str) -> &str {
        self.commits
            .get(query)
            .unwrap_or_else(|| panic!("no fixture version {query}; have {:?}", self.queries()))
    }

    /// A fresh copy of a small Go program (go.mod requiring greet `v1.1.0` and MixedCase `v1.0.0`,
    /// no go.sum, and main.go importing both) for [`GoClient::build`](crate::GoClient::build).
    /// Each call returns a new directory, since building writes go.sum into it.
    pub fn program_dir(&self) -> PathBuf {
        let n = self.next_program.fetch_add(1, Ordering::SeqCst);
        let dir = self.programs.path().join(format!("program-{n}"));
        std::fs::create_dir_all(&dir).expect("create program dir");
        std::fs::write(dir.join("go.mod"), PROGRAM_GO_MOD).expect("write program go.mod");
        std::fs::write(dir.join("main.go"), PROGRAM_MAIN).expect("write program main.go");
        dir
    }
}

const PROGRAM_GO_MOD: &str = "module example.com/agora-program

go 1.21

require (
	github.com/agora-fixtures/MixedCase v1.0.0
	github.com/agora-fixtures/greet v1.1.0
)
";

const PROGRAM_MAIN: &str = r#"package main

import (
	"fmt"

	mixedcase "github.com/agora-fixtures/MixedCase"
	"github.com/agora-fixtures/greet"
)

func main() {
	fmt.Println(greet.Hello(mixedcase.Name()))
}
"#;

const LICENSE: &str = "Fixture license: do what you like with this test data.\n";

/// Creates the public fixture repositories on `host` (which must not have them yet).
pub fn public_modules(host: &GitHost) -> PublicFixtures {
    let mut commits = BTreeMap::new();
    let mut record = |module: &str, version: &str, commit: String| {
        commits.insert(format!("{module}@{version}"), commit);
    };

    // greet: releases, a pre-release with an annotated tag, an untagged tip, and a v2 major branch.
    let mut r = host.repo(GREET);
    r.write("go.mod", format!("module {GREET}\n\ngo 1.21\n"))
        .write("LICENSE", LICENSE)
        .write(
            "greet.go",
            "// Package greet says hello.\npackage greet\n\n\
             // Hello greets name.\nfunc Hello(name string) string { return \"Hello, \" + name + \"!\" }\n",
        );
    let c = r.commit("greet: Hello");
    r.tag("v1.0.0");
    record(GREET, "v1.0.0", c);

    r.write(
        "goodbye.go",
        "package greet\n\n// Goodbye says goodbye to name.\n\
         func Goodbye(name string) string { return \"Goodbye, \" + name + \".\" }\n",
    );
    let c = r.commit("greet: Goodbye");
    r.tag("v1.1.0");
    record(GREET, "v1.1.0", c);

    r.write(
        "version.go",
        "package greet\n\n// Version of the greeting API.\nconst Version = \"1.2\"\n",
    );
    let c = r.commit("greet: Version");
    r.annotated_tag("v1.2.0-rc.1", "release candidate 1.2.0-rc.1");
    record(GREET, "v1.2.0-rc.1", c);

    r.write(
        "wip.go",
        "package greet\n\n// Shout greets name loudly (unreleased).\n\
         func Shout(name string) string { return \"HELLO, \" + name + \"!\" }\n",
    );
    let greet_untagged = r.commit("greet: work in progress");

    r.branch("v2").checkout("v2");
    r.write("go.mod", format!("module {GREET_V2}\n\ngo 1.21\n"))
        .remove("wip.go")
        .write(
            "greet.go",
            "// Package greet says hello, v2.\npackage greet\n\n\
             // Hello greets name in the given language.\n\
             func Hello(name, lang string) string {\n\
             \tif lang == \"fr\" {\n\t\treturn \"Bonjour, \" + name + \" !\"\n\t}\n\
             \treturn \"Hello, \" + name + \"!\"\n}\n",
        );
    let c = r.commit("greet: v2 API");
    r.tag("v2.0.0");
    record(GREET_V2, "v2.0.0", c);
    // The go command takes the checked-out branch as the default branch (remote HEAD).
    r.checkout("main");

    // MixedCase: upper case in the module path and in a pre-release.
    let mut r = host.repo(MIXED_CASE);
    r.write("go.mod", format!("module {MIXED_CASE}\n\ngo 1.21\n"))
        .write(
            "name.go",
            "// Package mixedcase has an upper-case module path.\npackage mixedcase\n\n\
             // Name returns a name to greet.\nfunc Name() string { return \"MixedCase\" }\n",
        );
    let c = r.commit("MixedCase: Name");
    r.tag("v1.0.0");
    record(MIXED_CASE, "v1.0.0", c);
    r.write(
        "upper.go",
        "package mixedcase\n\n// Upper returns the name in capitals.\nfunc Upper() string { return \"MIXEDCASE\" }\n",
    );
    let c = r.commit("MixedCase: Upper");
    r.tag("v1.1.0-RC.1");
    record(MIXED_CASE, "v1.1.0-RC.1", c);

    // bigzip: an incompressible 1 MiB file so the zip itself is about 1 MiB.
    let mut r = host.repo(BIG);
    r.write("go.mod", format!("module {BIG}\n\ngo 1.21\n"))
        .write(
            "bigzip.go",
            "// Package bigzip ships a large data file.\npackage bigzip\n\n\
             // BlobPath is the data file inside the module.\nconst BlobPath = \"data/blob.bin\"\n",
        )
        .write(
            "data/blob.bin",
            deterministic_bytes(0x5eed_a60a, BIG_BLOB_LEN),
        );
    let c = r.commit("bigzip: 1 MiB blob");
    r.tag("v1.0.0");
    record(BIG, "v1.0.0", c);

    PublicFixtures {
        commits,
        greet_untagged,
        programs: crate::scratch::tempdir("agora-programs-"),
        next_program: AtomicUsize::new(0),
    }
}

/// `len` pseudo-random bytes from a fixed seed (SplitMix64): the same on every run, and
/// incompressible, so zip sizes are predictable.
pub fn deterministic_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

mod private;
pub use private::*;
