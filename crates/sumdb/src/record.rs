//! Records: what a `lookup` answers and what data tiles hold (go: `tlog.ParseRecord`,
//! `tlog.FormatRecord`). A record's text is the version's go.sum lines:
//!
//! ```text
//! golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=
//! golang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=
//! ```

/// A `lookup` answer taken apart: `<id>\n<text>\n<tree note>`.
#[derive(Debug, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub id: u64,
    /// The record text, ending in `\n`.
    pub text: &'a [u8],
    /// The signed tree note that follows.
    pub note: &'a [u8],
}

/// Splits a record message (go: `tlog.ParseRecord`): the id line, the text up to the first
/// blank line, and whatever follows.
pub fn parse(msg: &[u8]) -> Option<Lookup<'_>> {
    let nl = msg.iter().position(|&b| b == b'\n')?;
    let id = std::str::from_utf8(&msg[..nl]).ok()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = id.parse().ok().filter(|id| *id < 1 << 63)?;
    let rest = &msg[nl + 1..];
    let end = rest.windows(2).position(|w| w == b"\n\n")?;
    let (text, note) = (&rest[..=end], &rest[end + 2..]);
    valid_text(text).then_some(Lookup { id, text, note })
}

/// Record text is UTF-8 with no control characters but newlines (go: `isValidRecordText`).
fn valid_text(text: &[u8]) -> bool {
    std::str::from_utf8(text)
        .is_ok_and(|t| t.chars().all(|c| c == '\n' || (c >= ' ' && c != '\u{7f}')))
}

/// The hash a record's go.sum lines give `file` (`""` for the zip, `"/go.mod"`) of
/// `module@version`.
pub fn hash_for<'a>(text: &'a [u8], module: &str, version: &str, file: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(text).ok()?;
    let want = format!("{version}{file}");
    text.lines().find_map(|line| {
        let mut f = line.split(' ');
        let (m, v, h) = (f.next()?, f.next()?, f.next()?);
        (f.next().is_none() && m == module && v == want).then_some(h)
    })
}

/// The records of a data tile starting at record `start`: each is its text followed by a blank
/// line, as sum.golang.org serves them and `golang.org/x/mod/sumdb` does (the one Go 1.27
/// vendors). Older versions of that server (Go 1.23's) put each record's id on a line before its text (`<id>\n<text>\n`);
/// those tiles are read too, and their ids must be consecutive from `start` (a record line
/// always has spaces, so an id line cannot be taken for one). `None` if the tile is not exactly
/// `count` records.
pub fn data_tile_records(mut data: &[u8], start: u64, count: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let first_line = data.iter().position(|&b| b == b'\n')?;
        if data[..first_line].iter().all(u8::is_ascii_digit) {
            let rec = parse(data)?;
            if rec.id != start + i as u64 {
                return None;
            }
            out.push(rec.text);
            data = rec.note;
            continue;
        }
        let end = data.windows(2).position(|w| w == b"\n\n")?;
        let text = &data[..=end];
        if !valid_text(text) {
            return None;
        }
        out.push(text);
        data = &data[end + 2..];
    }
    data.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\n\
                        golang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=\n";

    #[test]
    fn lookup_answers_split_like_go() {
        let msg = format!("17\n{TEXT}\ngo.sum database tree\n18\nHASH=\n\n— sig\n");
        let rec = parse(msg.as_bytes()).unwrap();
        assert_eq!(rec.id, 17);
        assert_eq!(rec.text, TEXT.as_bytes());
        assert!(rec.note.starts_with(b"go.sum database tree\n18\n"));
        assert_eq!(
            hash_for(rec.text, "golang.org/x/text", "v0.3.0", ""),
            Some("h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=")
        );
        assert_eq!(
            hash_for(rec.text, "golang.org/x/text", "v0.3.0", "/go.mod"),
            Some("h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=")
        );
        assert_eq!(hash_for(rec.text, "golang.org/x/text", "v0.3.1", ""), None);
        assert_eq!(hash_for(rec.text, "golang.org/x", "v0.3.0", ""), None);
        for bad in [
            "x\nA\n\n",
            "1\nno blank line\n",
            "1\nctl\u{1}\n\n",
            "\nA\n\n",
            "-1\nA\n\n",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn data_tiles_hold_records_separated_by_blank_lines() {
        let tile = format!("{TEXT}\n{TEXT}\n");
        let records = data_tile_records(tile.as_bytes(), 4, 2).unwrap();
        assert_eq!(records, [TEXT.as_bytes(), TEXT.as_bytes()]);
        assert_eq!(data_tile_records(tile.as_bytes(), 4, 1), None, "trailing");
        assert_eq!(data_tile_records(tile.as_bytes(), 4, 3), None, "too few");
        let ctl = format!("{TEXT}\nx\u{1} y z\n\n");
        assert_eq!(data_tile_records(ctl.as_bytes(), 4, 2), None, "control");
    }

    #[test]
    fn data_tiles_of_older_servers_hold_consecutive_records() {
        let tile = format!("4\n{TEXT}\n5\n{TEXT}\n");
        assert_eq!(data_tile_records(tile.as_bytes(), 4, 2).unwrap().len(), 2);
        assert_eq!(data_tile_records(tile.as_bytes(), 3, 2), None);
        assert_eq!(
            data_tile_records(tile.as_bytes(), 4, 1),
            None,
            "trailing bytes"
        );
        assert_eq!(data_tile_records(tile.as_bytes(), 4, 3), None, "too few");
    }
}
