//! Column text in the source's character sets, decoded to UTF-8.
//!
//! The binlog carries a character column's bytes in the column's own
//! charset, while the snapshot's query asks the server for UTF-8. Decoding
//! each charset here with `encoding_rs` (the WHATWG decoders browsers use)
//! makes a streamed row read exactly as the snapshot reads it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use encoding_rs::Encoding;

/// How one MySQL/MariaDB charset decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    Utf8,
    Whatwg(&'static Encoding),
    /// An ISO 8859 charset whose WHATWG decoder is the Windows superset:
    /// 0x80..0x9F are C1 controls, as the server converts them.
    IsoC1(&'static Encoding),
    /// UTF-32BE: four bytes per code point; encoding_rs has no decoder.
    Utf32,
}

/// The decoder for a charset name as `information_schema` and the binlog's
/// collation ids name it; `None` for charsets encoding_rs lacks (dec8, hp8,
/// swe7, armscii8, keybcs2, macce, cp850, cp852, geostd8): those are all
/// single-byte, and [`learn`] takes their table from the server itself.
pub fn decoder(charset: &str) -> Option<Decoding> {
    use encoding_rs::*;
    let whatwg = |e| Some(Decoding::Whatwg(e));
    match charset {
        "utf8" | "utf8mb3" | "utf8mb4" | "ascii" => Some(Decoding::Utf8),
        // MySQL's latin1 is Windows-1252, with 0x81/8D/8F/90/9D passed through
        // as WHATWG's decoder also does.
        "latin1" => whatwg(WINDOWS_1252),
        "latin2" => whatwg(ISO_8859_2),
        "latin5" => Some(Decoding::IsoC1(WINDOWS_1254)),
        "latin7" => whatwg(ISO_8859_13),
        "greek" => whatwg(ISO_8859_7),
        "hebrew" => whatwg(ISO_8859_8),
        "tis620" => Some(Decoding::IsoC1(WINDOWS_874)),
        "koi8r" => whatwg(KOI8_R),
        "koi8u" => whatwg(KOI8_U),
        "cp866" => whatwg(IBM866),
        "cp1250" => whatwg(WINDOWS_1250),
        "cp1251" => whatwg(WINDOWS_1251),
        "cp1256" => whatwg(WINDOWS_1256),
        "cp1257" => whatwg(WINDOWS_1257),
        "macroman" => whatwg(MACINTOSH),
        "big5" => whatwg(BIG5),
        // GBK is a superset of GB2312's EUC-CN encoding.
        "gb2312" | "gbk" => whatwg(GBK),
        "gb18030" => whatwg(GB18030),
        "ujis" | "eucjpms" => whatwg(EUC_JP),
        // WHATWG's Shift_JIS is Windows-31J, a superset of sjis.
        "sjis" | "cp932" => whatwg(SHIFT_JIS),
        "euckr" => whatwg(EUC_KR),
        "ucs2" | "utf16" => whatwg(UTF_16BE),
        "utf16le" => whatwg(UTF_16LE),
        "utf32" => Some(Decoding::Utf32),
        _ => None,
    }
}

/// Single-byte tables read from the server, by charset name.
type Learned = RwLock<HashMap<String, Arc<[char; 256]>>>;

fn learned() -> &'static Learned {
    static LEARNED: OnceLock<Learned> = OnceLock::new();
    LEARNED.get_or_init(Learned::default)
}

/// Whether `charset` decodes here without asking the server.
pub fn is_known(charset: &str) -> bool {
    decoder(charset).is_some() || learned().read().is_ok_and(|l| l.contains_key(charset))
}

/// Records a single-byte charset's table: `text` is what the server makes
/// of the bytes 0x00..=0xFF in that charset, converted to UTF-8 (one
/// character per byte). Anything else is refused and the charset stays
/// unknown.
pub fn learn(charset: &str, text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let Ok(table) = <[char; 256]>::try_from(chars) else { return false };
    if let Ok(mut l) = learned().write() {
        l.insert(charset.to_owned(), Arc::new(table));
    }
    true
}

/// Decodes text of `charset` (UTF-8 when unknown); malformed sequences
/// become U+FFFD, as no valid column value contains them.
pub fn decode(bytes: &[u8], charset: Option<&str>) -> String {
    let Some(decoding) = charset.and_then(decoder) else {
        let table = charset.and_then(|c| learned().read().ok()?.get(c).cloned());
        return match table {
            Some(t) => bytes.iter().map(|&b| t[usize::from(b)]).collect(),
            None => String::from_utf8_lossy(bytes).into_owned(),
        };
    };
    match decoding {
        Decoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Decoding::Whatwg(e) => e.decode_without_bom_handling(bytes).0.into_owned(),
        Decoding::IsoC1(e) => {
            if bytes.iter().any(|b| (0x80..0xa0).contains(b)) {
                let mut out = String::with_capacity(bytes.len());
                for chunk in bytes.split_inclusive(|b| (0x80..0xa0).contains(b)) {
                    let (text, c1) = match chunk.split_last() {
                        Some((&last, rest)) if (0x80..0xa0).contains(&last) => (rest, Some(char::from(last))),
                        _ => (chunk, None),
                    };
                    out.push_str(&e.decode_without_bom_handling(text).0);
                    out.extend(c1);
                }
                out
            } else {
                e.decode_without_bom_handling(bytes).0.into_owned()
            }
        }
        Decoding::Utf32 => bytes
            .chunks(4)
            .map(|c| {
                let code = c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
                if c.len() == 4 {
                    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_charset_decodes_its_own_text() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("gbk", &[0xd6, 0xd0, 0xce, 0xc4], "中文"),
            ("gb2312", &[0xd6, 0xd0, 0xce, 0xc4], "中文"),
            ("gb18030", &[0x81, 0x30, 0x81, 0x30], "\u{80}"),
            ("big5", &[0xa4, 0xa4, 0xa4, 0xe5], "中文"),
            ("ujis", &[0xc6, 0xfc, 0xcb, 0xdc], "日本"),
            ("sjis", &[0x93, 0xfa, 0x96, 0x7b], "日本"),
            ("cp932", &[0x87, 0x40], "①"),
            ("euckr", &[0xc7, 0xd1, 0xb1, 0xdb], "한글"),
            ("utf16", &[0xd8, 0x3d, 0xde, 0x00], "😀"),
            ("ucs2", &[0x00, 0x41, 0x04, 0x14], "AД"),
            ("utf16le", &[0x41, 0x00, 0x14, 0x04], "AД"),
            ("utf32", &[0x00, 0x01, 0xf6, 0x00, 0x00, 0x00, 0x00, 0x41], "😀A"),
            ("cp1251", &[0xcf, 0xf0, 0xe8, 0xe2, 0xe5, 0xf2], "Привет"),
            ("koi8r", &[0xf0, 0xd2, 0xc9], "При"),
            ("latin1", &[0x80, 0xe9], "€é"),
            ("latin2", &[0xb1, 0xe6], "ąć"),
            ("latin5", &[0xfd, 0x80], "ı\u{80}"),
            ("greek", &[0xe1, 0xe2], "αβ"),
            ("hebrew", &[0xf9, 0xec], "של"),
            ("utf8mb4", "é😀".as_bytes(), "é😀"),
        ];
        for (charset, bytes, text) in cases {
            assert_eq!(decode(bytes, Some(charset)), *text, "{charset}");
        }
    }

    #[test]
    fn learned_single_byte_tables_decode() {
        let mut text: String = (0u8..=255).map(char::from).collect();
        text.replace_range(0x5b..0x5c, "Ä");
        assert!(learn("swe7-test", &text));
        assert!(is_known("swe7-test"));
        assert_eq!(decode(b"[ab", Some("swe7-test")), "Äab");
        assert!(!learn("short", "abc"), "a table must have 256 characters");
        assert!(!is_known("short"));
    }

    #[test]
    fn unknown_charsets_read_as_utf8() {
        assert_eq!(decoder("swe7"), None);
        assert_eq!(decode(b"abc", Some("swe7")), "abc");
        assert_eq!(decode(b"abc", None), "abc");
    }

    proptest! {
        // Any bytes in any charset decode to some text, never a panic.
        #[test]
        fn any_bytes_decode(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                            charset in prop::sample::select(vec!["gbk", "gb18030", "big5", "ujis", "sjis", "euckr",
                                "utf16", "utf16le", "utf32", "latin5", "tis620", "utf8mb4", "cp1251"])) {
            let _ = decode(&bytes, Some(charset));
        }

        // Single-byte ISO charsets keep C1 controls as the server converts them.
        #[test]
        fn latin5_c1_controls_pass_through(b in 0x80u8..0xa0) {
            prop_assert_eq!(decode(&[b'a', b, b'z'], Some("latin5")), format!("a{}z", char::from(b)));
        }
    }
}
