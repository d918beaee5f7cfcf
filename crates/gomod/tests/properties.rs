//! Property tests: round trips of the parsers and formatters that face untrusted input.

use agora_gomod::{
    escape_path, escape_version, is_pseudo_version, pseudo_version, pseudo_version_base,
    pseudo_version_rev, pseudo_version_time, semver, unescape_path, unescape_version, ModulePath,
    PseudoTime,
};
use proptest::prelude::*;

/// Module paths built from valid pieces, with upper case to exercise escaping.
fn module_path() -> impl Strategy<Value = String> {
    let host = "[a-z0-9]{1,8}\\.[a-z]{2,5}";
    let elem = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}[A-Za-z0-9_]";
    (
        host,
        prop::collection::vec(elem, 0..4),
        prop::option::of(2u32..20),
    )
        .prop_filter_map("must pass check_path", |(host, elems, major)| {
            let mut p = host;
            for e in elems {
                p.push('/');
                p.push_str(&e);
            }
            if let Some(m) = major {
                p.push_str(&format!("/v{m}"));
            }
            ModulePath::new(&p).ok().map(ModulePath::into_string)
        })
}

fn semver_version() -> impl Strategy<Value = String> {
    (
        0u32..30,
        0u32..30,
        0u32..30,
        prop::option::of("[0-9A-Za-z-]{1,6}(\\.[0-9A-Za-z-]{1,6}){0,2}"),
        prop::option::of("[0-9A-Za-z-]{1,6}"),
    )
        .prop_map(|(a, b, c, pre, build)| {
            let mut v = format!("v{a}.{b}.{c}");
            if let Some(pre) = pre {
                v.push('-');
                v.push_str(&pre);
            }
            if let Some(build) = build {
                v.push('+');
                v.push_str(&build);
            }
            v
        })
        // Numeric pre-release identifiers with leading zeros are not semver.
        .prop_filter("valid semver", |v| semver::is_valid(v))
}

fn pseudo_time() -> impl Strategy<Value = PseudoTime> {
    // Years 0000..=9999 in Unix seconds.
    (-62_167_219_200i64..253_402_300_800).prop_map(|s| PseudoTime::from_unix(s).unwrap())
}

proptest! {
    #[test]
    fn path_escaping_round_trips(path in module_path()) {
        let escaped = escape_path(&path).unwrap();
        prop_assert!(!escaped.bytes().any(|b| b.is_ascii_uppercase()));
        prop_assert_eq!(unescape_path(&escaped).unwrap(), path.clone());
        let parsed = ModulePath::from_escaped(&escaped).unwrap();
        prop_assert_eq!(parsed.as_str(), path);
    }

    #[test]
    fn version_escaping_round_trips(v in "[A-Za-z0-9.+_~-]{1,20}") {
        if let Ok(escaped) = escape_version(&v) {
            prop_assert_eq!(unescape_version(&escaped).unwrap(), v);
        }
    }

    #[test]
    fn unescape_never_panics_and_inverts(s in "\\PC{0,30}") {
        if let Ok(p) = unescape_path(&s) {
            prop_assert_eq!(escape_path(&p).unwrap(), s.clone());
        }
        if let Ok(v) = unescape_version(&s) {
            prop_assert_eq!(escape_version(&v).unwrap(), s);
        }
    }

    #[test]
    fn pseudo_versions_round_trip(
        older in prop::option::of(semver_version()),
        t in pseudo_time(),
        rev in "[0-9a-f]{12}",
        major in 0u32..5,
    ) {
        let older = older.unwrap_or_default();
        let major = format!("v{major}");
        let v = pseudo_version(&major, &older, t, &rev);
        prop_assert!(is_pseudo_version(&v), "{}", v);
        prop_assert_eq!(pseudo_version_rev(&v).unwrap(), rev);
        prop_assert_eq!(pseudo_version_time(&v).unwrap(), t.to_string());
        prop_assert_eq!(PseudoTime::parse(&t.to_string()), Some(t));
        prop_assert_eq!(PseudoTime::from_unix(t.to_unix()), Some(t));
        let base = pseudo_version_base(&v);
        if older.is_empty() {
            prop_assert_eq!(base.unwrap(), "");
        } else if semver::build(&older).is_some() {
            // The build suffix is carried through, and it is part of the base.
            prop_assert_eq!(base.unwrap(), older.clone());
        } else {
            prop_assert_eq!(base.unwrap(), semver::canonical_semver(&older).unwrap());
        }
        if !older.is_empty() {
            prop_assert_eq!(semver::compare(&older, &v), std::cmp::Ordering::Less);
        }
    }

    #[test]
    fn semver_never_panics(v in "\\PC{0,24}", w in "\\PC{0,24}") {
        let _ = semver::canonical(&v);
        let _ = semver::major_minor(&v);
        let _ = pseudo_version_base(&v);
        let _ = pseudo_version_time(&v);
        prop_assert_eq!(semver::compare(&v, &w), semver::compare(&w, &v).reverse());
    }
}

/// Go-ish go.mod fragments, so that random files get past the tokenizer often enough to reach the
/// directive rules.
fn go_mod_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(&b"module "[..]),
        Just(&b"go "[..]),
        Just(&b"require "[..]),
        Just(&b"retract "[..]),
        Just(&b"example.com/m"[..]),
        Just(&b"v1.2.3"[..]),
        Just(&b"1.24"[..]),
        Just(&b"\""[..]),
        Just(&b"`"[..]),
        Just(&b"\\"[..]),
        Just(&b"("[..]),
        Just(&b")"[..]),
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b","[..]),
        Just(&b"\n"[..]),
        Just(&b"//"[..]),
        Just(&b"/*"[..]),
        Just(&b" "[..]),
        Just(&b"\xff"[..]),
        Just("é".as_bytes()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn go_mod_parsing_never_panics(data in go_mod_text(), noise in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = agora_gomod::GoMod::parse(&data);
        let _ = agora_gomod::gomodfile::module_path(&data);
        let _ = agora_gomod::GoMod::parse(&noise);
        let _ = agora_gomod::gomodfile::module_path(&noise);
    }

    #[test]
    fn synthesized_go_mod_reads_back(path in "\\PC{1,20}") {
        let line = agora_gomod::format_module_line(&path);
        let parsed = agora_gomod::GoMod::parse(line.as_bytes());
        // Quoting makes any path a single token, except those a go.mod cannot hold unquoted
        // that also parse as something else (a lone punctuation character).
        if let Ok(g) = parsed {
            if path.chars().count() > 1 {
                prop_assert_eq!(g.module.as_deref(), Some(path.as_str()));
            }
        }
    }

    #[test]
    fn prefix_patterns_never_panic(globs in "[a-z*?\\[\\]\\\\^,/.-]{0,16}", target in "\\PC{0,16}") {
        let _ = agora_gomod::match_prefix_patterns(&globs, &target);
    }

    #[test]
    fn zip_checks_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = agora_gomod::check_zip(std::io::Cursor::new(&data), "example.com/m", "v1.0.0");
        let _ = agora_gomod::hash_zip(std::io::Cursor::new(&data));
    }

    #[test]
    fn truncated_and_flipped_zips_never_panic(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
        let files = vec![
            agora_gomod::MemFile::regular("go.mod", "module example.com/m\n"),
            agora_gomod::MemFile::regular("a.go", "package a\n"),
        ];
        let mut out = std::io::Cursor::new(Vec::new());
        agora_gomod::create_zip(&mut out, "example.com/m", "v1.0.0", &files, &Default::default()).unwrap();
        let mut data = out.into_inner();
        if flip < data.len() {
            data[flip] ^= 1 << bit;
        }
        data.truncate(cut.max(1).min(data.len()));
        let _ = agora_gomod::check_zip(std::io::Cursor::new(&data), "example.com/m", "v1.0.0");
        let _ = agora_gomod::hash_zip(std::io::Cursor::new(&data));
    }

    #[test]
    fn file_classification_never_panics(paths in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..8)) {
        let files: Vec<_> = paths
            .into_iter()
            .map(|p| agora_gomod::MemFile::regular(p, "x"))
            .collect();
        let checked = agora_gomod::check_files(&files, &Default::default());
        prop_assert_eq!(
            checked.valid.len() + checked.omitted.len() + checked.invalid.len() <= files.len(),
            true
        );
    }
}
