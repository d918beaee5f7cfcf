//! Reading go.mod files the way the `go` command reads a dependency's go.mod.
//!
//! A proxy needs three facts from a go.mod: the module path, the `go` directive (it changes the
//! module zip's vendor rule) and the `retract` directives (they change `@latest`). The `go` command
//! gets all three from x/mod `modfile.ParseLax`, which ignores directives it does not know but
//! still rejects a file it cannot tokenize or whose `go`, `module` or `require` lines are
//! malformed; a rejected file contributes no `go` version and no retractions. [`GoMod::parse`]
//! reproduces exactly that accept/reject decision, because it changes checksums and `@latest`.
//!
//! Separately, the "does this go.mod declare module M" test in `go mod download` uses the much
//! simpler line scanner `modfile.ModulePath`; that is [`module_path()`]. The two can disagree (a
//! `module (` block is understood by the parser, not by the scanner), and each is used where Go
//! uses it.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::error::Error;
use crate::unicode::{decode_rune, is_print, trim_space};
use crate::{module, semver};

/// What a proxy needs from a go.mod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoMod {
    /// The `module` directive's path, unquoted. Not validated: compare it, don't trust it.
    pub module: Option<String>,
    /// The `go` directive's version (`1.21`, `1.22.3`, `1.23rc1`).
    pub go: Option<String>,
    /// The `retract` directives, in file order. Versions are as written, not canonicalized (as in
    /// the `go` command); malformed directives are skipped, as the `go` command skips them in
    /// dependencies.
    pub retract: Vec<Retraction>,
    /// The `require` directives (path, version), in file order.
    pub require: Vec<(String, String)>,
}

/// A retracted version or inclusive range of versions (`retract v1.0.1` or
/// `retract [v1.1.0, v1.2.3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retraction {
    pub low: String,
    pub high: String,
}

impl Retraction {
    /// Reports whether `version` lies in `[low, high]` by semver precedence.
    pub fn contains(&self, version: &str) -> bool {
        semver::compare(&self.low, version) != Ordering::Greater
            && semver::compare(version, &self.high) != Ordering::Greater
    }
}

impl GoMod {
    /// Parses a go.mod with the rules of x/mod `modfile.ParseLax` (how the `go` command reads the
    /// go.mod of a dependency): unknown directives and blocks are ignored, `exclude`, `replace`,
    /// `toolchain` and `godebug` are ignored, malformed `retract` lines are skipped; but a
    /// tokenizing error, a malformed `go`, `module` or `require` line, or a repeated `go` or
    /// `module` directive rejects the whole file.
    pub fn parse(data: &[u8]) -> Result<GoMod, Error> {
        let stmts = Parser::new(data).parse_file()?;
        let mut gomod = GoMod::default();
        for stmt in &stmts {
            match stmt {
                Stmt::Line { tokens, line } => {
                    if let Some((verb, args)) = tokens.split_first() {
                        gomod.add(verb, args, *line)?;
                    }
                }
                Stmt::Block { tokens, lines } => {
                    // `require foo (` and friends are not blocks Go knows; skip them quietly.
                    let [verb] = tokens.as_slice() else { continue };
                    if !matches!(
                        *verb,
                        b"module" | b"godebug" | b"require" | b"exclude" | b"replace" | b"retract"
                    ) {
                        continue;
                    }
                    for (args, line) in lines {
                        gomod.add(verb, args, *line)?;
                    }
                }
            }
        }
        Ok(gomod)
    }

    /// One directive; the lax subset of x/mod `File.add`.
    fn add(&mut self, verb: &[u8], args: &[&[u8]], line: usize) -> Result<(), Error> {
        let fail = |reason: String| Error::GoMod { line, reason };
        match verb {
            b"go" => {
                if self.go.is_some() {
                    return Err(fail("repeated go statement".into()));
                }
                let [version] = args else {
                    return Err(fail("go directive expects exactly one argument".into()));
                };
                let Some(version) = go_version_lax(version) else {
                    return Err(fail(format!(
                        "invalid go version '{}': must match format 1.23.0",
                        String::from_utf8_lossy(version)
                    )));
                };
                self.go = Some(version);
            }
            b"module" => {
                if self.module.is_some() {
                    return Err(fail("repeated module statement".into()));
                }
                let [path] = args else {
                    return Err(fail("usage: module module/path".into()));
                };
                let path = parse_string(path).map_err(fail)?;
                self.module = Some(String::from_utf8_lossy(&path).into_owned());
            }
            b"require" => {
                let [path, version] = args else {
                    return Err(fail("usage: require module/path v1.2.3".into()));
                };
                let path = parse_string(path).map_err(fail)?;
                let path = String::from_utf8_lossy(&path);
                let version = parse_version(version).map_err(fail)?;
                let Some((_, path_major)) = module::split_path_version(&path) else {
                    return Err(fail(format!("require {path}: invalid module path")));
                };
                module::check_path_major(&version, path_major)
                    .map_err(|e| fail(format!("require {path}: {e}")))?;
                self.require.push((path.into_owned(), version));
            }
            b"retract" => {
                // Errors in a dependency's retractions are ignored, as are extra tokens.
                if let Some(r) = parse_version_interval(args) {
                    self.retract.push(r);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reports whether any `retract` directive covers `version`.
    pub fn is_retracted(&self, version: &str) -> bool {
        self.retract.iter().any(|r| r.contains(version))
    }

    /// Reports whether the `go` directive says 1.24 or later, which switches module zips to the
    /// corrected vendor rule (see the zip module). A missing directive counts as older.
    pub fn go_at_least_1_24(&self) -> bool {
        self.go
            .as_deref()
            .is_some_and(|v| go_lang_at_least(v, "1", "24"))
    }
}

/// The deprecation message of a go.mod: the paragraph beginning with `Deprecated:` in the
/// comments just before the `module` directive or after it on its line, as x/mod
/// `modfile.File.Module.Deprecated` reads it (the text after `Deprecated:`, trimmed).
pub fn deprecation(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let mut before: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            before.push(c.trim());
            continue;
        }
        if t.is_empty() {
            before.clear();
            continue;
        }
        let is_module = t
            .strip_prefix("module")
            .is_some_and(|rest| rest.starts_with([' ', '\t', '(']));
        if !is_module {
            before.clear();
            continue;
        }
        let mut comments = before.clone();
        if let Some((_, suffix)) = t.split_once("//") {
            comments.push(suffix.trim());
        }
        // Paragraphs are separated by empty comment lines.
        let mut paragraph: Vec<&str> = Vec::new();
        let mut found: Option<String> = None;
        for c in comments.iter().chain(std::iter::once(&"")) {
            if c.is_empty() {
                if let Some(first) = paragraph.first() {
                    if let Some(rest) = first.strip_prefix("Deprecated:") {
                        let mut msg = vec![rest.trim()];
                        msg.extend(&paragraph[1..]);
                        found = Some(msg.join(" ").trim().to_owned());
                    }
                }
                paragraph.clear();
            } else {
                paragraph.push(c);
            }
        }
        return found;
    }
    None
}

/// `retract v` or `retract [lo, hi]`; `None` for anything else.
///
/// The versions are kept as written (only unquoted): `modfile.ParseLax` does not canonicalize
/// retractions, and the `go` command compares them as they are, so `v1.2` retracts `v1.2.0` and a
/// non-version retracts nothing.
fn parse_version_interval(args: &[&[u8]]) -> Option<Retraction> {
    let version = |tok: &[u8]| {
        parse_string(tok)
            .ok()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    match args {
        [] => None,
        [b"(", ..] => None,
        [b"[", low, b",", high, b"]", ..] => Some(Retraction {
            low: version(low)?,
            high: version(high)?,
        }),
        [b"[", ..] => None,
        [v, ..] => {
            let v = version(v)?;
            Some(Retraction {
                low: v.clone(),
                high: v,
            })
        }
    }
}

/// A version argument: a (possibly quoted) string whose canonical form exists; returns that
/// canonical form (x/mod `parseVersion` without a fixer).
fn parse_version(tok: &[u8]) -> Result<String, String> {
    let raw = parse_string(tok).map_err(|e| {
        format!(
            "version {:?} invalid: {e}",
            String::from_utf8_lossy(tok).into_owned()
        )
    })?;
    let s = String::from_utf8_lossy(&raw);
    semver::canonical(&s)
        .ok_or_else(|| format!("version {s:?} invalid: must be of the form v1.2.3"))
}

/// A string argument: unquoted if it starts with `"`, else taken as is but without quote
/// characters (x/mod `parseString`).
fn parse_string(tok: &[u8]) -> Result<Vec<u8>, String> {
    if tok.starts_with(b"\"") {
        unquote(tok).ok_or_else(|| "invalid quoted string: invalid syntax".to_owned())
    } else if tok.iter().any(|b| matches!(b, b'"' | b'\'' | b'`')) {
        Err("invalid quoted string: unquoted string cannot contain quote".to_owned())
    } else {
        Ok(tok.to_vec())
    }
}

/// Go's `strconv.Unquote` for `"..."` and `` `...` `` strings, over bytes (the result may be
/// invalid UTF-8, through `\xNN` escapes or raw bytes in a raw string).
fn unquote(s: &[u8]) -> Option<Vec<u8>> {
    match s {
        [b'`', inner @ .., b'`'] if !inner.contains(&b'`') => {
            Some(inner.iter().copied().filter(|&b| b != b'\r').collect())
        }
        [b'"', rest @ ..] => {
            let mut out = Vec::with_capacity(rest.len());
            let mut s = rest;
            loop {
                match s {
                    [] | [b'\n', ..] => return None,
                    [b'"'] => return Some(out),
                    [b'"', ..] => return None,
                    [b'\\', rest @ ..] => {
                        let (bytes, rest) = unescape(rest)?;
                        out.extend_from_slice(&bytes);
                        s = rest;
                    }
                    [c, rest @ ..] if c.is_ascii() => {
                        out.push(*c);
                        s = rest;
                    }
                    _ => {
                        // Invalid UTF-8 becomes U+FFFD, as in Go.
                        let (c, n) = decode_rune(s);
                        let mut buf = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        s = &s[n..];
                    }
                }
            }
        }
        _ => None,
    }
}

/// One escape sequence after a `\` in a `"` string: its bytes and the rest.
fn unescape(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let (&c, rest) = s.split_first()?;
    let simple = |b: u8| Some((vec![b], rest));
    match c {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0C),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0B),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'x' | b'u' | b'U' => {
            let n = match c {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let digits = rest.get(..n)?;
            let mut v: u32 = 0;
            for &d in digits {
                v = (v << 4) | char::from(d).to_digit(16)?;
            }
            let rest = &rest[n..];
            if c == b'x' {
                // A raw byte, which need not be valid UTF-8 on its own.
                return Some((vec![u8::try_from(v).ok()?], rest));
            }
            let ch = char::from_u32(v)?;
            Some((ch.to_string().into_bytes(), rest))
        }
        b'0'..=b'7' => {
            let digits = rest.get(..2)?;
            let mut v = u32::from(c - b'0');
            for &d in digits {
                if !(b'0'..=b'7').contains(&d) {
                    return None;
                }
                v = (v << 3) | u32::from(d - b'0');
            }
            Some((vec![u8::try_from(v).ok()?], &rest[2..]))
        }
        _ => None,
    }
}

/// The `go` directive's argument, accepted as `modfile.GoVersionRE`
/// (`1.21`, `1.21.3`, `1.21rc1`) or repaired to `major.minor` by the lax rule that tolerates old
/// odd forms such as `1.21-beta` or `v1.21.x`. `None` if neither applies.
fn go_version_lax(tok: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(tok).ok();
    if let Some(s) = s.filter(|s| is_go_version(s)) {
        return Some(s.to_owned());
    }
    // `^v?(([1-9][0-9]*)\.(0|[1-9][0-9]*))([^0-9].*)$`
    let t = tok.strip_prefix(b"v").unwrap_or(tok);
    let major = digits_prefix(t);
    if major == 0 || t[0] == b'0' || t.get(major) != Some(&b'.') {
        return None;
    }
    let after = &t[major + 1..];
    let minor = digits_prefix(after);
    if minor == 0 || (after[0] == b'0' && minor > 1) || after.len() == minor {
        return None;
    }
    std::str::from_utf8(&t[..major + 1 + minor])
        .ok()
        .map(str::to_owned)
}

fn digits_prefix(b: &[u8]) -> usize {
    b.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `modfile.GoVersionRE`: `^([1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?([a-z]+[0-9]+)?$`.
fn is_go_version(s: &str) -> bool {
    fn number(s: &str) -> Option<&str> {
        let n = digits_prefix(s.as_bytes());
        if n == 0 || (n > 1 && s.starts_with('0')) {
            return None;
        }
        Some(&s[n..])
    }
    if s.starts_with('0') {
        return false;
    }
    let Some(rest) = number(s).and_then(|r| r.strip_prefix('.')).and_then(number) else {
        return false;
    };
    let rest = match rest.strip_prefix('.') {
        Some(r) => match number(r) {
            Some(r) => r,
            None => return false,
        },
        None => rest,
    };
    if rest.is_empty() {
        return true;
    }
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = rest.len() - letters;
    letters > 0 && digits > 0 && rest.as_bytes()[letters..].iter().all(u8::is_ascii_digit)
}

/// Reports whether a go.mod `go` version's language version (`go/version.Lang`) is at least
/// `major.minor`. Versions that Go's toolchain-version parser rejects count as older than all.
fn go_lang_at_least(version: &str, major: &str, minor: &str) -> bool {
    // go/version strips a `-suffix` before parsing.
    let v = version.split('-').next().unwrap_or_default();
    let Some((v_major, v_minor)) = gover_lang(v) else {
        return false;
    };
    let cmp_int = |a: &str, b: &str| a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    cmp_int(v_major, major)
        .then_with(|| cmp_int(v_minor, minor))
        .is_ge()
}

/// `internal/gover.Parse` reduced to the language version `(major, minor)`; `None` if invalid.
fn gover_lang(v: &str) -> Option<(&str, &str)> {
    fn cut_int(x: &str) -> Option<(&str, &str)> {
        let n = digits_prefix(x.as_bytes());
        if n == 0 || (n > 1 && x.starts_with('0')) {
            return None;
        }
        Some(x.split_at(n))
    }
    let (major, rest) = cut_int(v)?;
    if rest.is_empty() {
        return Some((major, "0"));
    }
    let (minor, rest) = cut_int(rest.strip_prefix('.')?)?;
    if rest.is_empty() {
        return Some((major, minor));
    }
    if let Some(patch) = rest.strip_prefix('.') {
        let (_, tail) = cut_int(patch)?;
        return tail.is_empty().then_some((major, minor));
    }
    // A pre-release: lower-case letters, then optionally a number.
    let kind = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    if kind == 0
        || rest
            .as_bytes()
            .get(kind)
            .is_some_and(|b| !b.is_ascii_digit())
    {
        return None;
    }
    let pre = &rest[kind..];
    if !pre.is_empty() {
        let (_, tail) = cut_int(pre)?;
        if !tail.is_empty() {
            return None;
        }
    }
    Some((major, minor))
}

/// The module path as x/mod `modfile.ModulePath` finds it: the first line starting with `module`
/// plus white space, comments cut, unquoted if quoted. This is what `go mod download` compares
/// with the requested path to decide whether a go.mod belongs to the module. `None` when no such
/// line exists or its quoting is malformed.
pub fn module_path(data: &[u8]) -> Option<String> {
    for line in data.split(|&b| b == b'\n') {
        let line = match line.windows(2).position(|w| w == b"//") {
            Some(i) => &line[..i],
            None => line,
        };
        let Some(rest) = trim_space(line).strip_prefix(b"module") else {
            continue;
        };
        let path = trim_space(rest);
        // `modulex` is not the module directive, and `module` alone names nothing.
        if path.len() == rest.len() || path.is_empty() {
            continue;
        }
        if path.starts_with(b"\"") || path.starts_with(b"`") {
            return unquote(path).map(|p| String::from_utf8_lossy(&p).into_owned());
        }
        return Some(String::from_utf8_lossy(path).into_owned());
    }
    None
}

/// The go.mod the `go` command synthesizes for a module without one: `module <path>\n`, the path
/// quoted only if go.mod syntax requires it (x/mod `modfile.AutoQuote`).
pub fn format_module_line(path: &str) -> String {
    format!("module {}\n", auto_quote(path))
}

/// `s` as a go.mod token: unchanged unless it must be quoted (x/mod `modfile.AutoQuote`).
pub fn auto_quote(s: &str) -> Cow<'_, str> {
    if must_quote(s) {
        Cow::Owned(go_quote(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// x/mod `modfile.MustQuote`.
fn must_quote(s: &str) -> bool {
    let special = s.chars().any(|c| match c {
        ' ' | '"' | '\'' | '`' => true,
        '(' | ')' | '[' | ']' | '{' | '}' | ',' => s.len() > 1,
        c => !is_print(c),
    });
    special || s.is_empty() || s.contains("//") || s.contains("/*")
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if is_print(c) => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7F}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// The go.mod tokenizer and statement parser (x/mod modfile/read.go), reduced to what decides
// acceptance and the tokens of each statement. Comments are recognised but dropped.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Eof,
    /// A comment after other tokens on its line; ends the line.
    EolComment,
    /// A comment alone on its line.
    Comment,
    Newline,
    /// One of `( ) [ ] { } ,`.
    Punct(u8),
    Ident,
    Str,
}

impl Kind {
    fn is_eol(self) -> bool {
        matches!(self, Kind::Eof | Kind::EolComment | Kind::Newline)
    }
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind,
    text: &'a [u8],
    line: usize,
}

/// A top-level statement: a line of tokens, or `verb... (` followed by lines and `)`.
enum Stmt<'a> {
    Line {
        tokens: Vec<&'a [u8]>,
        line: usize,
    },
    Block {
        tokens: Vec<&'a [u8]>,
        /// Each line's tokens and line number.
        lines: Vec<(Vec<&'a [u8]>, usize)>,
    },
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
    /// The next token (one token of lookahead, like Go's parser).
    token: Token<'a>,
}

type ParseResult<T> = Result<T, Error>;

impl<'a> Parser<'a> {
    fn new(data: &'a [u8]) -> Self {
        Parser {
            data,
            pos: 0,
            line: 1,
            token: Token {
                kind: Kind::Eof,
                text: b"",
                line: 1,
            },
        }
    }

    fn error<T>(&self, reason: impl Into<String>) -> ParseResult<T> {
        Err(Error::GoMod {
            line: self.line,
            reason: reason.into(),
        })
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    fn peek_rune(&self) -> char {
        decode_rune(self.rest()).0
    }

    fn read_rune(&mut self) -> char {
        let (c, n) = decode_rune(self.rest());
        self.pos += n;
        if c == '\n' {
            self.line += 1;
        }
        c
    }

    /// Scans the next token into `self.token`.
    fn read_token(&mut self) -> ParseResult<()> {
        while self.pos < self.data.len() {
            let rest = self.rest();
            if matches!(rest[0], b' ' | b'\t' | b'\r') {
                self.pos += 1;
                continue;
            }
            if rest.starts_with(b"//") {
                let (start, line) = (self.pos, self.line);
                let line_start = self.data[..start]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                // Anything but blanks before the `//` on this line makes it an end-of-line
                // comment, which also terminates the statement.
                let suffix = self.data[line_start..start]
                    .iter()
                    .any(|b| !matches!(b, b' ' | b'\t' | b'\r'));
                self.pos += 2;
                while self.pos < self.data.len() && self.read_rune() != '\n' {}
                self.token = Token {
                    kind: if suffix {
                        Kind::EolComment
                    } else {
                        Kind::Comment
                    },
                    text: &self.data[start..self.pos],
                    line,
                };
                return Ok(());
            }
            if rest.starts_with(b"/*") {
                return self.error("mod files must use // comments (not /* */ comments)");
            }
            break;
        }
        let (start, line) = (self.pos, self.line);
        if self.pos >= self.data.len() {
            self.token = Token {
                kind: Kind::Eof,
                text: b"",
                line,
            };
            return Ok(());
        }
        let c = self.peek_rune();
        let kind = match c {
            '\n' | '(' | ')' | '[' | ']' | '{' | '}' | ',' => {
                self.read_rune();
                if c == '\n' {
                    Kind::Newline
                } else {
                    Kind::Punct(c as u8)
                }
            }
            '"' | '`' => {
                self.read_rune();
                loop {
                    if self.pos >= self.data.len() {
                        self.line = line;
                        return self.error("unexpected EOF in string");
                    }
                    if self.peek_rune() == '\n' {
                        return self.error("unexpected newline in string");
                    }
                    let d = self.read_rune();
                    if d == c {
                        break;
                    }
                    if d == '\\' && c != '`' {
                        if self.pos >= self.data.len() {
                            self.line = line;
                            return self.error("unexpected EOF in string");
                        }
                        // The escaped character is taken whatever it is, even a newline.
                        self.read_rune();
                    }
                }
                Kind::Str
            }
            c if !is_ident(c) => {
                return self.error(format!("unexpected input character {c:?}"));
            }
            _ => {
                while self.pos < self.data.len() && is_ident(self.peek_rune()) {
                    let rest = self.rest();
                    if rest.starts_with(b"//") {
                        break;
                    }
                    if rest.starts_with(b"/*") {
                        return self.error("mod files must use // comments (not /* */ comments)");
                    }
                    self.read_rune();
                }
                Kind::Ident
            }
        };
        self.token = Token {
            kind,
            text: &self.data[start..self.pos],
            line,
        };
        Ok(())
    }

    fn peek(&self) -> Kind {
        self.token.kind
    }

    /// Returns the current token and scans the next.
    fn lex(&mut self) -> ParseResult<Token<'a>> {
        let tok = self.token;
        self.read_token()?;
        Ok(tok)
    }

    fn parse_file(mut self) -> ParseResult<Vec<Stmt<'a>>> {
        self.read_token()?;
        let mut stmts = Vec::new();
        loop {
            match self.peek() {
                Kind::Newline | Kind::Comment => {
                    self.lex()?;
                }
                Kind::Eof => return Ok(stmts),
                _ => stmts.push(self.parse_stmt()?),
            }
        }
    }

    fn parse_stmt(&mut self) -> ParseResult<Stmt<'a>> {
        let first = self.lex()?;
        let line = first.line;
        let mut tokens = vec![first.text];
        loop {
            let tok = self.lex()?;
            if tok.kind.is_eol() {
                return Ok(Stmt::Line { tokens, line });
            }
            if tok.kind != Kind::Punct(b'(') {
                tokens.push(tok.text);
                continue;
            }
            if self.peek().is_eol() {
                return self.parse_line_block(tokens, line);
            }
            if self.peek() == Kind::Punct(b')') {
                let rparen = self.lex()?;
                if self.peek().is_eol() {
                    // `verb ()`: an empty block.
                    self.lex()?;
                    return Ok(Stmt::Block {
                        tokens,
                        lines: Vec::new(),
                    });
                }
                tokens.push(tok.text);
                tokens.push(rparen.text);
            } else {
                tokens.push(tok.text);
            }
        }
    }

    fn parse_line_block(&mut self, tokens: Vec<&'a [u8]>, line: usize) -> ParseResult<Stmt<'a>> {
        let mut lines = Vec::new();
        loop {
            match self.peek() {
                Kind::EolComment | Kind::Newline | Kind::Comment => {
                    self.lex()?;
                }
                Kind::Eof => {
                    return self.error(format!(
                        "syntax error (unterminated block started at go.mod:{line})"
                    ));
                }
                Kind::Punct(b')') => {
                    self.lex()?;
                    if !self.peek().is_eol() {
                        return self.error("syntax error (expected newline after closing paren)");
                    }
                    self.lex()?;
                    return Ok(Stmt::Block { tokens, lines });
                }
                _ => {
                    let first = self.lex()?;
                    let mut l = vec![first.text];
                    loop {
                        let tok = self.lex()?;
                        if tok.kind.is_eol() {
                            break;
                        }
                        l.push(tok.text);
                    }
                    lines.push((l, first.line));
                }
            }
        }
    }
}

/// Characters that can appear in an unquoted token.
fn is_ident(c: char) -> bool {
    !matches!(c, ' ' | '(' | ')' | '[' | ']' | '{' | '}' | ',') && is_print(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<GoMod, Error> {
        GoMod::parse(s.as_bytes())
    }

    #[test]
    fn module_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("module example.com/m\n", Some("example.com/m")),
            ("module example.com/m", Some("example.com/m")),
            ("module \"example.com/m\"\n", Some("example.com/m")),
            ("module \"example.com/\\u006d\"\n", Some("example.com/m")),
            (
                "// c\nmodule example.com/m // comment\n",
                Some("example.com/m"),
            ),
            ("module (\n\texample.com/m\n)\n", Some("example.com/m")),
            (
                "module (\n\t// c\n\texample.com/m // d\n\n)\n",
                Some("example.com/m"),
            ),
            ("  module   example.com/m  \r\n", Some("example.com/m")),
            ("go 1.21\n", None),
            ("", None),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap().module.as_deref(), *want, "{src:?}");
        }
    }

    #[test]
    fn go_directive() {
        let cases: &[(&str, Option<&str>)] = &[
            ("go 1.21\n", Some("1.21")),
            ("go 1.21.3\n", Some("1.21.3")),
            ("go 1.21rc1\n", Some("1.21rc1")),
            ("go 1.24\n", Some("1.24")),
            // Lax repairs.
            ("go 1.21-beta\n", Some("1.21")),
            ("go v1.21.x\n", Some("1.21")),
            ("go 1.21.x\n", Some("1.21")),
            ("go 1.0.x\n", Some("1.0")),
            ("go 1.21.\n", Some("1.21")),
            ("go 1.21rc\n", Some("1.21")),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).unwrap().go.as_deref(), *want, "{src:?}");
        }
        for bad in [
            "go 1\n",
            "go 1.21 1.22\n",
            "go\n",
            "go 01.21\n",
            "go 1.021\n",
            "go 1.05x\n",
            "go \"1.21\"\n",
            "go 1.21\ngo 1.21\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Top-level stray tokens are just unknown directives.
        assert!(parse("module x\n)\n)x\n").is_ok());
        // `go` in a block is not a directive Go knows as a block; ignored.
        assert_eq!(parse("go (\n1.21\n)\n").unwrap().go, None);
    }

    #[test]
    fn go_versions_and_the_vendor_switch() {
        let cases = [
            ("1.24", true),
            ("1.24.0", true),
            ("1.24rc1", true),
            ("1.25", true),
            ("1.100", true),
            ("2.0", true),
            ("1.23", false),
            ("1.23.9", false),
            ("1.9", false),
            // Valid for go.mod, but go/version cannot parse it: counts as old.
            ("1.24.0rc1", false),
        ];
        for (v, want) in cases {
            let g = GoMod {
                go: Some(v.to_owned()),
                ..GoMod::default()
            };
            assert_eq!(g.go_at_least_1_24(), want, "{v}");
        }
        assert!(!GoMod::default().go_at_least_1_24());
    }

    #[test]
    fn retractions() {
        let g = parse(
            "module m\n\
             retract v1.0.1 // bad\n\
             retract [v1.1.0, v1.2.3]\n\
             retract (\n\tv2.0.0+incompatible\n\t[v0.1, v0.2]\n\tnot-a-version\n\t[v0.9.0,]\n)\n\
             retract \"v0.5.0\"\n\
             retract v0.6.0 extra tokens\n",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = g
            .retract
            .iter()
            .map(|r| (r.low.as_str(), r.high.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("v1.0.1", "v1.0.1"),
                ("v1.1.0", "v1.2.3"),
                ("v2.0.0+incompatible", "v2.0.0+incompatible"),
                ("v0.1", "v0.2"),
                ("not-a-version", "not-a-version"),
                ("v0.5.0", "v0.5.0"),
                ("v0.6.0", "v0.6.0"),
            ]
        );
        assert!(g.is_retracted("v1.0.1"));
        assert!(g.is_retracted("v1.1.0"));
        assert!(g.is_retracted("v1.2.0-pre"));
        assert!(g.is_retracted("v1.2.3"));
        assert!(!g.is_retracted("v1.2.4"));
        assert!(!g.is_retracted("v1.0.2"));
        assert!(g.is_retracted("v0.1.5"));
        assert!(g.is_retracted("v2.0.0"), "build metadata does not count");
        assert!(
            g.is_retracted("v0.2.0"),
            "shorthand bounds compare as their canonical form"
        );
    }

    #[test]
    fn tolerated_and_rejected() {
        // Everything a dependency's go.mod may hold that the proxy does not need.
        let ok = "module example.com/m\n\
                  go 1.22\n\
                  toolchain go1.22.1\n\
                  godebug default=go1.21\n\
                  require example.com/a v1.0.0\n\
                  require (\n\texample.com/b/v2 v2.1.0 // indirect\n\t\"example.com/c\" v1.2\n)\n\
                  exclude example.com/a v0.9.0\n\
                  replace example.com/a => ../a\n\
                  replace (\n\tbad syntax => ???\n)\n\
                  unknown directive here\n\
                  tool example.com/t\n\
                  ignore ./x\n\
                  whatever ( x y )\n";
        let g = parse(ok).unwrap();
        assert_eq!(g.module.as_deref(), Some("example.com/m"));
        assert_eq!(g.go.as_deref(), Some("1.22"));

        for bad in [
            "module a b\n",
            "module\n",
            "module x\nmodule y\n",
            "module \"unterminated\n",
            "module \"bad\\q\"\n",
            "module a'b\n",
            "module `raw`\n",
            "/* comment */\n",
            "module x /* c */\n",
            "require example.com/a\n",
            "require example.com/a v1.0.0 extra\n",
            "require example.com/a latest\n",
            "require example.com/a/v2 v1.0.0\n",
            "require example.com/a v2.0.0\n",
            "require example.com/a/v1 v1.0.0\n",
            "require (\n\texample.com/a\n)\n",
            "require (\n",
            "retract (\nv1.0.0\n) x\n",
            "module x\u{a0}\n",
            "\u{feff}module x\n",
            "module x\x0c\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        // +incompatible satisfies an unsuffixed path.
        assert!(parse("require example.com/a v2.0.0+incompatible\n").is_ok());
        // Invalid UTF-8 reads as U+FFFD, which is printable: a token, not an error.
        assert_eq!(
            GoMod::parse(b"module x\xff\n").unwrap().module.as_deref(),
            Some("x\u{FFFD}")
        );
    }

    #[test]
    fn error_lines() {
        let e = parse("module x\n\ngo 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "go.mod:3: invalid go version '1': must match format 1.23.0"
        );
    }

    #[test]
    fn scanner_module_path() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"module example.com/m\n", Some("example.com/m")),
            (b"module example.com/m // c\n", Some("example.com/m")),
            (
                b"// module x\nmodule example.com/m\n",
                Some("example.com/m"),
            ),
            (b"module \"example.com/m\"\n", Some("example.com/m")),
            (b"module `example.com/m`\n", Some("example.com/m")),
            (b"module \"example.com/m\n", None),
            (b"modulex y\nmodule z\n", Some("z")),
            (b"module\nmodule z\n", Some("z")),
            (b"\tmodule\tz\r\n", Some("z")),
            (b"module (\n\texample.com/m\n)\n", Some("(")),
            (b"go 1.21\n", None),
            (b"", None),
        ];
        for (src, want) in cases {
            assert_eq!(
                module_path(src).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
    }

    #[test]
    fn quoting() {
        let cases = [
            ("example.com/m", "module example.com/m\n"),
            ("example.com/m v2", "module \"example.com/m v2\"\n"),
            ("a//b", "module \"a//b\"\n"),
            ("a/*b", "module \"a/*b\"\n"),
            ("", "module \"\"\n"),
            ("(", "module (\n"),
            ("(x", "module \"(x\"\n"),
            ("x\"y", "module \"x\\\"y\"\n"),
            ("tab\there", "module \"tab\\there\"\n"),
            ("nb\u{a0}sp", "module \"nb\\u00a0sp\"\n"),
            ("é", "module é\n"),
            ("\u{7f}", "module \"\\x7f\"\n"),
            ("\u{e0001}", "module \"\\U000e0001\"\n"),
        ];
        for (path, want) in cases {
            assert_eq!(format_module_line(path), want, "{path:?}");
        }
        // What we write, we read back.
        for (path, _) in cases {
            if path.is_empty() || path == "(" {
                continue;
            }
            let line = format_module_line(path);
            assert_eq!(
                parse(&line).unwrap().module.as_deref(),
                Some(path),
                "{line:?}"
            );
        }
    }

    #[test]
    fn unquoting() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"\"\"", Some(b"")),
            (
                b"\"a\\x41\\101\\u00e9\\U0001F600\\n\\\\\\\"\"",
                Some("aAAé😀\n\\\"".as_bytes()),
            ),
            (b"\"\\xff\"", Some(b"\xff")),
            (b"\"\xff\"", Some("\u{FFFD}".as_bytes())),
            (b"\"\\'\"", None),
            (b"\"\\400\"", None),
            (b"\"\\ud800\"", None),
            (b"\"\\x4\"", None),
            (b"\"a\"b\"", None),
            (b"\"a", None),
            (b"\"", None),
            (b"`a\rb`", Some(b"ab")),
            (b"`a`b`", None),
            (b"'a'", None),
        ];
        for (src, want) in cases {
            assert_eq!(
                unquote(src).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(src)
            );
        }
    }

    #[test]
    fn requirements_and_deprecation() {
        let data = b"// Deprecated: use example.com/new instead.\n// It will not be updated.\nmodule example.com/old\n\ngo 1.21\n\nrequire (\n\texample.com/a v1.2.3\n\texample.com/b/v2 v2.0.0 // indirect\n)\nrequire example.com/c v0.1.0\n";
        let m = GoMod::parse(data).unwrap();
        assert_eq!(
            m.require,
            vec![
                ("example.com/a".to_owned(), "v1.2.3".to_owned()),
                ("example.com/b/v2".to_owned(), "v2.0.0".to_owned()),
                ("example.com/c".to_owned(), "v0.1.0".to_owned()),
            ]
        );
        assert_eq!(
            deprecation(data).as_deref(),
            Some("use example.com/new instead. It will not be updated.")
        );
        assert_eq!(
            deprecation(b"module example.com/m // Deprecated: gone\n").as_deref(),
            Some("gone")
        );
        assert_eq!(
            deprecation(b"// Deprecated: not attached\n\nmodule example.com/m\n"),
            None
        );
        assert_eq!(deprecation(b"// A comment.\nmodule example.com/m\n"), None);
    }
}
