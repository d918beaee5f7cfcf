//! The Unicode questions Go's module rules ask, answered with Go's own tables.
//!
//! `module.CheckFilePath` allows any Unicode letter (`unicode.IsLetter`) in file names; the go.mod
//! lexer and quoting rules depend on `unicode.IsPrint`; and the module zip rules reject two files
//! whose names are equal under Unicode simple case folding (`strings.EqualFold`). Rust's standard
//! library answers none of these in Go's terms (different Unicode version, different definitions),
//! so the tables in `unicode_tables.rs` are generated from the Go toolchain.

use std::cmp::Ordering;

use crate::unicode_tables::{FOLD_MIN, LETTERS, PRINTABLE};

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                Ordering::Less
            } else if lo > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// Go's `unicode.IsLetter`: general categories Lu, Ll, Lt, Lm and Lo.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    in_ranges(LETTERS, c)
}

/// Go's `unicode.IsPrint` (and `strconv.IsPrint`): letters, marks, numbers, punctuation, symbols
/// and the ASCII space; no other spaces, no control or format characters.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    in_ranges(PRINTABLE, c)
}

/// Go's `unicode.IsSpace`.
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// Go's `utf8.DecodeRune`: the first character of `b` and its length in bytes; U+FFFD and length 1
/// for an invalid or truncated sequence, U+FFFD and length 0 for empty input.
pub(crate) fn decode_rune(b: &[u8]) -> (char, usize) {
    let Some(&first) = b.first() else {
        return (char::REPLACEMENT_CHARACTER, 0);
    };
    let width = match first {
        0x00..=0x7F => return (char::from(first), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (char::REPLACEMENT_CHARACTER, 1),
    };
    match b.get(..width).map(std::str::from_utf8) {
        Some(Ok(s)) => (
            s.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER),
            width,
        ),
        _ => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// Go's `utf8.DecodeLastRune`.
fn decode_last_rune(b: &[u8]) -> (char, usize) {
    // A UTF-8 sequence is at most 4 bytes: try each possible start, longest first.
    for width in (2..=4.min(b.len())).rev() {
        let start = b.len() - width;
        if let Ok(s) = std::str::from_utf8(&b[start..]) {
            if let Some(c) = s.chars().next().filter(|c| c.len_utf8() == width) {
                return (c, width);
            }
        }
    }
    match b.last() {
        None => (char::REPLACEMENT_CHARACTER, 0),
        Some(&last) if last.is_ascii() => (char::from(last), 1),
        Some(_) => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// Go's `bytes.TrimSpace`: strips leading and trailing Unicode white space.
pub(crate) fn trim_space(mut b: &[u8]) -> &[u8] {
    loop {
        let (c, n) = decode_rune(b);
        if n == 0 || !is_space(c) {
            break;
        }
        b = &b[n..];
    }
    loop {
        let (c, n) = decode_last_rune(b);
        if n == 0 || !is_space(c) {
            break;
        }
        b = &b[..b.len() - n];
    }
    b
}

/// Maps `c` to a representative of its simple case-folding class, so that two strings are equal
/// under `strings.EqualFold` exactly when their folded forms are equal (x/mod zip `strToFold`:
/// the smallest rune of the `unicode.SimpleFold` orbit, with ASCII upper case then lowered).
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let folded = FOLD_MIN
        .binary_search_by_key(&u32::from(c), |&(r, _)| r)
        .ok()
        .and_then(|i| char::from_u32(FOLD_MIN[i].1))
        .unwrap_or(c);
    folded.to_ascii_lowercase()
}

/// [`fold_char`] applied to every character.
pub(crate) fn fold_str(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

/// Go's `strings.EqualFold`.
#[cfg(test)]
pub(crate) fn equal_fold(a: &str, b: &str) -> bool {
    a.chars().map(fold_char).eq(b.chars().map(fold_char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_follow_go() {
        for c in ['a', 'Z', 'é', 'ß', 'ǅ', 'ʰ', '日', 'א', 'Ж'] {
            assert!(is_letter(c), "{c:?}");
        }
        // Rust calls these alphabetic; Go does not call them letters.
        for c in [
            'Ⅻ',
            '\u{0345}',
            'Ⓐ',
            '\u{0301}',
            '1',
            '٣',
            ' ',
            '_',
            '\u{10FFFF}',
        ] {
            assert!(!is_letter(c), "{c:?}");
        }
    }

    #[test]
    fn decoding_and_trimming() {
        assert_eq!(decode_rune(b""), (char::REPLACEMENT_CHARACTER, 0));
        assert_eq!(decode_rune(b"a"), ('a', 1));
        assert_eq!(decode_rune("é!".as_bytes()), ('é', 2));
        assert_eq!(decode_rune(b"\xff"), (char::REPLACEMENT_CHARACTER, 1));
        assert_eq!(decode_rune(b"\xe6\x97"), (char::REPLACEMENT_CHARACTER, 1));
        assert_eq!(
            decode_rune(b"\xed\xa0\x80"),
            (char::REPLACEMENT_CHARACTER, 1)
        ); // surrogate
        assert_eq!(decode_last_rune("a日".as_bytes()), ('日', 3));
        assert_eq!(decode_last_rune(b"a\x97"), (char::REPLACEMENT_CHARACTER, 1));
        assert_eq!(trim_space(" \t\u{a0}x y\u{3000}\r\n".as_bytes()), b"x y");
        assert_eq!(trim_space("\u{a0}".as_bytes()), b"");
        assert_eq!(trim_space(b" \xff "), b"\xff");
    }

    #[test]
    fn folding() {
        assert!(equal_fold("Go.MOD", "go.mod"));
        // KELVIN SIGN and LATIN SMALL LETTER LONG S fold to ASCII letters.
        assert!(equal_fold("\u{212A}", "k"));
        assert!(equal_fold("\u{017F}", "S"));
        // Greek sigma has three forms, all one class.
        assert!(equal_fold("Σ", "ς"));
        assert!(equal_fold("σ", "ς"));
        assert!(equal_fold("ǅ", "ǆ"));
        assert!(equal_fold("ǅ", "Ǆ"));
        // Full folding would make these equal; simple folding does not.
        assert!(!equal_fold("ß", "ss"));
        assert!(!equal_fold("a", "b"));
        assert_eq!(fold_str("ABC/Déf"), fold_str("abc/dÉF"));
    }
}
