//! Listing a zip's central directory exactly as it is written.
//!
//! The `zip` crate indexes entries by name and keeps only the last of several entries with the
//! same name. Go's `archive/zip` keeps every entry, and the module rules depend on that: a repeated
//! file makes a module zip invalid, and `h1:` hashes every entry name, repeats included. So the
//! entry list (names and declared sizes) is read here; the `zip` crate is still used to
//! decompress contents.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// One central directory record: what the module rules look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CdEntry {
    /// The name as stored, not decoded.
    pub name: Vec<u8>,
    /// The declared uncompressed size.
    pub size: u64,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: u64 = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CD_SIG: u32 = 0x0201_4b50;
const CD_LEN: usize = 46;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zip: {msg}"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Reads every central directory record, in order.
pub(crate) fn read_central_directory<R: Read + Seek>(reader: &mut R) -> io::Result<Vec<CdEntry>> {
    let file_len = reader.seek(SeekFrom::End(0))?;

    // The end-of-central-directory record sits in the last 22 + 65535 bytes (it may be followed
    // by a comment of up to 64 KiB).
    let tail_len = file_len.min((EOCD_LEN + usize::from(u16::MAX)) as u64);
    let tail_start = file_len - tail_len;
    reader.seek(SeekFrom::Start(tail_start))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    reader.by_ref().take(tail_len).read_to_end(&mut tail)?;
    let eocd_at = (0..=tail.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&p| {
            u32_at(&tail, p) == EOCD_SIG
                && p + EOCD_LEN + usize::from(u16_at(&tail, p + 20)) <= tail.len()
        })
        .filter(|_| tail.len() >= EOCD_LEN)
        .ok_or_else(|| invalid("not a valid zip file"))?;
    let eocd = &tail[eocd_at..];
    let eocd_pos = tail_start + eocd_at as u64;
    let mut count = u64::from(u16_at(eocd, 10));
    let mut cd_size = u64::from(u32_at(eocd, 12));
    let mut cd_offset = u64::from(u32_at(eocd, 16));

    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // Zip64: the locator just before the record points at the zip64 end record.
        if let Some(locator_pos) = eocd_pos.checked_sub(ZIP64_LOCATOR_LEN) {
            reader.seek(SeekFrom::Start(locator_pos))?;
            let mut locator = [0u8; ZIP64_LOCATOR_LEN as usize];
            reader.read_exact(&mut locator)?;
            if u32_at(&locator, 0) == ZIP64_LOCATOR_SIG {
                let record_pos = u64_at(&locator, 8);
                if record_pos >= locator_pos {
                    return Err(invalid("bad zip64 locator"));
                }
                reader.seek(SeekFrom::Start(record_pos))?;
                let mut record = [0u8; 56];
                reader.read_exact(&mut record)?;
                if u32_at(&record, 0) != ZIP64_EOCD_SIG {
                    return Err(invalid("bad zip64 end record"));
                }
                count = u64_at(&record, 32);
                cd_size = u64_at(&record, 40);
                cd_offset = u64_at(&record, 48);
            }
        }
    }

    let cd_end = cd_offset
        .checked_add(cd_size)
        .filter(|&end| end <= file_len)
        .ok_or_else(|| invalid("bad central directory"))?;
    // Zips with data prepended (self-extracting archives) store offsets relative to the zip
    // proper; find the directory where the end record says it must end.
    let base = if cd_end <= eocd_pos && starts_with_cd_sig(reader, cd_offset)? {
        0
    } else {
        let base = eocd_pos
            .checked_sub(cd_end)
            .ok_or_else(|| invalid("bad central directory offset"))?;
        if count > 0 && !starts_with_cd_sig(reader, base + cd_offset)? {
            return Err(invalid("bad central directory offset"));
        }
        base
    };

    // `base + cd_end <= eocd_pos <= file_len`, so this cannot overflow.
    reader.seek(SeekFrom::Start(base + cd_offset))?;
    let mut cd = BufReader::new(reader.by_ref().take(cd_size));
    // Never trust `count` for the allocation; the vector grows as records are actually read.
    let mut entries = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let mut head = [0u8; CD_LEN];
        cd.read_exact(&mut head)
            .map_err(|_| invalid("truncated central directory"))?;
        if u32_at(&head, 0) != CD_SIG {
            return Err(invalid("bad central directory record"));
        }
        let size32 = u32_at(&head, 24);
        let name_len = usize::from(u16_at(&head, 28));
        let extra_len = usize::from(u16_at(&head, 30));
        let comment_len = u64::from(u16_at(&head, 32));
        let mut name = vec![0u8; name_len];
        cd.read_exact(&mut name)
            .map_err(|_| invalid("truncated central directory"))?;
        let mut extra = vec![0u8; extra_len];
        cd.read_exact(&mut extra)
            .map_err(|_| invalid("truncated central directory"))?;
        io::copy(&mut cd.by_ref().take(comment_len), &mut io::sink())?;

        let mut size = u64::from(size32);
        if size32 == 0xFFFF_FFFF {
            size = zip64_size(&extra).ok_or_else(|| invalid("missing zip64 size"))?;
        }
        entries.push(CdEntry { name, size });
    }
    Ok(entries)
}

fn starts_with_cd_sig<R: Read + Seek>(reader: &mut R, at: u64) -> io::Result<bool> {
    reader.seek(SeekFrom::Start(at))?;
    let mut sig = [0u8; 4];
    match reader.read_exact(&mut sig) {
        Ok(()) => Ok(u32::from_le_bytes(sig) == CD_SIG),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The 64-bit uncompressed size from a zip64 extra field (id 1). When the 32-bit size field is
/// saturated, the uncompressed size is the extra field's first value.
fn zip64_size(extra: &[u8]) -> Option<u64> {
    let mut rest = extra;
    while rest.len() >= 4 {
        let id = u16_at(rest, 0);
        let len = usize::from(u16_at(rest, 2));
        let body = rest.get(4..4 + len)?;
        if id == 1 {
            return (body.len() >= 8).then(|| u64_at(body, 0));
        }
        rest = &rest[4 + len..];
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    /// A stored zip whose entries hold `x`.
    pub(crate) fn zip_with(names: &[&str]) -> Vec<u8> {
        let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for n in names {
            zw.start_file(*n, opts).unwrap();
            zw.write_all(b"x").unwrap();
        }
        zw.finish().unwrap().into_inner()
    }

    /// Rewrites every occurrence of `from` (local and central names) to `to`, of equal length:
    /// the zip crate refuses to write duplicate names, Go's and ours must still read them.
    pub(crate) fn rename(data: &mut [u8], from: &[u8], to: &[u8]) {
        assert_eq!(from.len(), to.len());
        let mut i = 0;
        while i + from.len() <= data.len() {
            if &data[i..i + from.len()] == from {
                data[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
    }

    #[test]
    fn lists_entries_in_order() {
        let data = zip_with(&["b", "a/x", "c"]);
        let entries = read_central_directory(&mut Cursor::new(&data)).unwrap();
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"b"[..], b"a/x", b"c"]);
        assert_eq!(entries[1].size, 1);
    }

    #[test]
    fn keeps_duplicates() {
        let mut data = zip_with(&["dup1", "dup2"]);
        rename(&mut data, b"dup2", b"dup1");
        let entries = read_central_directory(&mut Cursor::new(&data)).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, entries[1].name);
    }

    #[test]
    fn prepended_data_and_garbage() {
        let mut data = b"#!/bin/sh\nexit 0\n".to_vec();
        data.extend(zip_with(&["a"]));
        let entries = read_central_directory(&mut Cursor::new(&data)).unwrap();
        assert_eq!(entries.len(), 1);
        for junk in [&b""[..], b"PK\x05\x06", b"not a zip at all", &[0u8; 100]] {
            assert!(read_central_directory(&mut Cursor::new(junk)).is_err());
        }
        // Truncations never panic.
        let data = zip_with(&["a", "b"]);
        for n in 0..data.len() {
            let _ = read_central_directory(&mut Cursor::new(&data[..n]));
        }
    }
}
