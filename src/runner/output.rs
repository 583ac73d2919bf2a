//! Bounds on what a run's output may hold: a program's stdout line and an HTTP response body are
//! read in bounded pieces, and what goes into a task field is cut to the field's limit with a
//! marker saying so.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What followed the bytes that were kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// Nothing: the bytes are the whole text.
    None,
    /// This many more bytes, dropped.
    Bytes(u64),
    /// More, of a length nobody said.
    Unknown,
}

/// Characters kept free for the marker: `… [truncated 18446744073709551615 bytes]` is 40.
const MARKER_ROOM: usize = 40;

fn marker(dropped: Option<u64>) -> String {
    match dropped {
        Some(n) => format!("… [truncated {n} bytes]"),
        None => "… [truncated]".to_owned(),
    }
}

/// The first `max_chars` characters of `s`.
pub fn cut(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => s[..at].to_owned(),
        None => s.to_owned(),
    }
}

/// The end of `bytes` without a character cut short there.
fn without_split_char(bytes: &[u8]) -> &[u8] {
    // A UTF-8 character is at most 4 bytes: look at the last lead byte within 3 of the end.
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 != 0x80 {
            let need = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            return if need > back { &bytes[..bytes.len() - back] } else { bytes };
        }
    }
    bytes
}

/// `bytes` (followed by `rest`) as text of at most `max_chars` characters. Text that does not fit
/// whole ends in `… [truncated N bytes]` (N = bytes of the original left out, when known) or
/// `… [truncated]`. Invalid UTF-8 becomes U+FFFD.
pub fn clip(original: &[u8], rest: Rest, max_chars: usize) -> String {
    let bytes = if rest == Rest::None { original } else { without_split_char(original) };
    let whole = String::from_utf8_lossy(bytes);
    if rest == Rest::None && whole.chars().count() <= max_chars {
        return whole.into_owned();
    }
    // Keep characters up to the room left for the marker, counting the original bytes they took.
    let keep = max_chars.saturating_sub(MARKER_ROOM);
    let mut text = String::new();
    let (mut chars, mut used) = (0usize, 0usize);
    'chunks: for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if chars == keep {
                break 'chunks;
            }
            text.push(c);
            chars += 1;
            used += c.len_utf8();
        }
        if !chunk.invalid().is_empty() {
            if chars == keep {
                break;
            }
            text.push(char::REPLACEMENT_CHARACTER);
            chars += 1;
            used += chunk.invalid().len();
        }
    }
    let left_here = (original.len() - used) as u64;
    let dropped = match rest {
        Rest::None => Some(left_here),
        Rest::Bytes(n) => Some(left_here + n),
        Rest::Unknown => None,
    };
    text.push_str(&marker(dropped));
    text
}

/// Reads one line into `line` (without its `\n`), keeping at most `max` bytes of it: the rest of
/// an over-long line is read and dropped, never held. `Ok(None)` at the end of input, else
/// `Ok(Some(n))` with the number of bytes dropped.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<u64>> {
    line.clear();
    let mut dropped = 0u64;
    let mut read_any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(read_any.then_some(dropped));
        }
        read_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let part = &buf[..newline.unwrap_or(buf.len())];
        let take = part.len().min(max - line.len());
        line.extend_from_slice(&part[..take]);
        dropped += (part.len() - take) as u64;
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(dropped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_kept_whole() {
        assert_eq!(clip(b"hello", Rest::None, 5), "hello");
        assert_eq!(clip("ünï".as_bytes(), Rest::None, 3), "ünï");
        assert_eq!(clip(b"a\xffb", Rest::None, 3), "a\u{fffd}b");
    }

    #[test]
    fn text_that_does_not_fit_is_cut_and_marked() {
        let long = "x".repeat(1000);
        let t = clip(long.as_bytes(), Rest::None, 100);
        assert!(t.chars().count() <= 100);
        assert_eq!(t, format!("{}… [truncated 940 bytes]", "x".repeat(60)));
        let t = clip(long.as_bytes(), Rest::Bytes(5), 100);
        assert!(t.ends_with("… [truncated 945 bytes]"), "{t}");
        assert_eq!(clip(b"short", Rest::Unknown, 100), "short… [truncated]");
        assert_eq!(clip(b"short", Rest::Bytes(3), 100), "short… [truncated 3 bytes]");
        // A character cut short by the read is dropped and counted, not turned into U+FFFD.
        let e = "é".as_bytes();
        assert_eq!(clip(&[b'a', e[0]], Rest::Bytes(1), 100), "a… [truncated 2 bytes]");
        // Multi-byte characters count once; the marker counts bytes.
        let t = clip("é".repeat(100).as_bytes(), Rest::None, 50);
        assert_eq!(t, format!("{}… [truncated 180 bytes]", "é".repeat(10)));
        let worst = clip(&[b'x'; 70_000], Rest::Bytes(u64::MAX - 70_000), 65_536);
        assert_eq!(worst.chars().count(), 65_536, "the marker room is enough for any count");
    }

    #[tokio::test]
    async fn a_long_line_is_read_in_bounded_memory() {
        let mut input: Vec<u8> = Vec::new();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\nshort\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(1024, &input[..]);
        let mut line = Vec::new();
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), Some(99_990));
        assert_eq!(line, b"xxxxxxxxxx");
        assert!(line.capacity() < 1024, "never held the whole line");
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), Some(0));
        assert_eq!(line, b"short");
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), Some(0));
        assert_eq!(line, b"last");
        assert_eq!(read_line(&mut reader, &mut line, 10).await.unwrap(), None);
    }
}
