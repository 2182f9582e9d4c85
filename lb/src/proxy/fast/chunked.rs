//! Where a chunked response body ends (RFC 9112 §7.1), found while its bytes stream past.
//!
//! The fast path forwards a chunked body as it came, byte for byte, so it never re-frames
//! it; it only needs to know where the message ends, to stop reading there and keep the
//! upstream connection for the next request. That makes the parser the guard against a
//! backend that desynchronises the connection: anything not strictly chunked is an error,
//! and the connection is dropped rather than reused.
//!
//! Strict on purpose: sizes are 1–15 hex digits (no sign, no overflow; whitespace after
//! them only before a `;`, as RFC 9112's grammar allows), every
//! line ends in CRLF (a bare LF is refused), a chunk's data is followed by exactly CRLF,
//! and a size line's extensions and each trailer line are bounded (`LINE_MAX`) so a backend
//! cannot make the lb scan without end.

/// Longest chunk-extension part or trailer line accepted.
pub(crate) const LINE_MAX: usize = 4096;

/// Most hex digits in a chunk size: 15 digits cannot overflow a `u64`.
const SIZE_DIGITS_MAX: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the size: `digits` read so far, value `size`.
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, which only a `;` may follow (RFC 9112 §7.1.1's BWS).
    SizeSpace {
        size: u64,
        len: usize,
    },
    /// After `;`: extensions up to CR.
    Extension {
        size: u64,
        len: usize,
    },
    /// The size line's CR was read; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Inside a chunk's data: `left` bytes to go.
    Data {
        left: u64,
    },
    /// After a chunk's data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line of `len` bytes so far.
    Trailer {
        len: usize,
    },
    /// A trailer line's CR was read.
    TrailerLf,
    /// The final empty line's CR was read.
    EndLf,
    Done,
}

/// Why the body is not well-formed chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) &'static str);

/// The decoder's position in a chunked body.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
        }
    }

    /// Read `input`, the body's next bytes. `Ok(Some(n))`: the message ends after the
    /// first `n` bytes of `input` (any more belong to no message). `Ok(None)`: all of
    /// `input` is body, and more is needed.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, Invalid> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { left } = self.state {
                // Skip the data in one step: it is most of the bytes.
                let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                continue;
            }
            self.state = step(self.state, input[i])?;
            i += 1;
            if self.state == State::Done {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Whether the whole message has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

fn step(state: State, b: u8) -> Result<State, Invalid> {
    Ok(match state {
        State::Size { size, digits } => match (b, hex(b)) {
            (_, Some(d)) if digits < SIZE_DIGITS_MAX => State::Size {
                size: size << 4 | u64::from(d),
                digits: digits + 1,
            },
            (_, Some(_)) => return Err(Invalid("chunk size too long")),
            (b';', None) if digits > 0 => State::Extension { size, len: 0 },
            (b' ' | b'\t', None) if digits > 0 => State::SizeSpace { size, len: 1 },
            (b'\r', None) if digits > 0 => State::SizeLf { size },
            _ => return Err(Invalid("bad chunk size")),
        },
        State::SizeSpace { size, len } => match b {
            b';' => State::Extension { size, len },
            b' ' | b'\t' if len < LINE_MAX => State::SizeSpace { size, len: len + 1 },
            _ => return Err(Invalid("whitespace after a chunk size not before `;`")),
        },
        State::Extension { size, len } => match b {
            b'\r' => State::SizeLf { size },
            b'\n' => return Err(Invalid("bare LF after a chunk size")),
            _ if len >= LINE_MAX => return Err(Invalid("chunk extension too long")),
            _ if b.is_ascii_control() && b != b'\t' => {
                return Err(Invalid("control byte in a chunk extension"))
            }
            _ => State::Extension { size, len: len + 1 },
        },
        State::SizeLf { size } => match b {
            b'\n' if size == 0 => State::TrailerStart,
            b'\n' => State::Data { left: size },
            _ => return Err(Invalid("CR without LF after a chunk size")),
        },
        State::Data { .. } => unreachable!("data is skipped in feed"),
        State::DataCr => match b {
            b'\r' => State::DataLf,
            _ => return Err(Invalid("chunk data longer than its size")),
        },
        State::DataLf => match b {
            b'\n' => State::Size { size: 0, digits: 0 },
            _ => return Err(Invalid("CR without LF after chunk data")),
        },
        State::TrailerStart => match b {
            b'\r' => State::EndLf,
            b'\n' => return Err(Invalid("bare LF in the trailer section")),
            _ => trailer_byte(0, b)?,
        },
        State::Trailer { len } => match b {
            b'\r' => State::TrailerLf,
            b'\n' => return Err(Invalid("bare LF in a trailer")),
            _ => trailer_byte(len, b)?,
        },
        State::TrailerLf => match b {
            b'\n' => State::TrailerStart,
            _ => return Err(Invalid("CR without LF in a trailer")),
        },
        State::EndLf => match b {
            b'\n' => State::Done,
            _ => return Err(Invalid("CR without LF at the end of the body")),
        },
        State::Done => return Err(Invalid("bytes after the end of the body")),
    })
}

fn trailer_byte(len: usize, b: u8) -> Result<State, Invalid> {
    if len >= LINE_MAX {
        return Err(Invalid("trailer line too long"));
    }
    if b.is_ascii_control() && b != b'\t' {
        return Err(Invalid("control byte in a trailer"));
    }
    Ok(State::Trailer { len: len + 1 })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `body` whole and in every split into two pieces: the end must be found at the
    /// same place either way.
    fn end(body: &[u8]) -> Result<Option<usize>, Invalid> {
        let whole = Chunked::new().feed(body);
        for cut in 0..=body.len() {
            let mut c = Chunked::new();
            let split = match c.feed(&body[..cut]) {
                Ok(Some(n)) => Ok(Some(n)),
                Ok(None) => c.feed(&body[cut..]).map(|n| n.map(|n| n + cut)),
                Err(e) => Err(e),
            };
            assert_eq!(
                split,
                whole,
                "split at {cut} of {:?}",
                String::from_utf8_lossy(body)
            );
        }
        whole
    }

    #[test]
    fn finds_the_end_of_valid_bodies() {
        assert_eq!(end(b"0\r\n\r\n"), Ok(Some(5)));
        assert_eq!(end(b"5\r\nhello\r\n0\r\n\r\nGET"), Ok(Some(15)));
        assert_eq!(end(b"A;ext=1\r\n0123456789\r\n0\r\n\r\n"), Ok(Some(26)));
        assert_eq!(end(b"1\r\nx\r\n0\r\nEtag: x\r\n\r\n"), Ok(Some(20)));
        assert_eq!(end(b"00000F\r\n0123456789abcde\r\n0\r\n\r\n"), Ok(Some(30)));
        assert_eq!(end(b"5 \t;x=1\r\nhello\r\n0\r\n\r\n"), Ok(Some(21)));
        assert_eq!(end(b"5\r\nhel"), Ok(None));
    }

    #[test]
    fn refuses_loose_framing() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],  // bare LF
            b"5\r\nhello\n0\r\n\r\n",       // bare LF after data
            b"5\r\nhelloX\r\n0\r\n\r\n",    // data longer than its size
            b" 5\r\nhello\r\n0\r\n\r\n",    // leading space
            b"+5\r\nhello\r\n",             // sign
            b"\r\n",                        // no digits
            b"1000000000000000\r\n",        // 16 digits
            b"0\r\n\n",                     // bare LF at the end
            b"0\r\nx\ny\r\n\r\n",           // bare LF in a trailer
            b"5\r\nhello\r\n0\r\n\r\n\r\n", // fed whole: ends before the extra CRLF (ok)
        ] {
            let r = Chunked::new().feed(bad);
            if bad == b"5\r\nhello\r\n0\r\n\r\n\r\n" {
                assert_eq!(r, Ok(Some(15)));
            } else {
                assert!(r.is_err(), "{:?} gave {r:?}", String::from_utf8_lossy(bad));
            }
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', LINE_MAX + 1));
        assert_eq!(
            Chunked::new().feed(&long),
            Err(Invalid("chunk extension too long"))
        );
        let mut trailer = b"0\r\n".to_vec();
        trailer.extend(std::iter::repeat_n(b'a', LINE_MAX + 1));
        assert_eq!(
            Chunked::new().feed(&trailer),
            Err(Invalid("trailer line too long"))
        );
    }

    #[test]
    fn largest_size_does_not_overflow() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"FFFFFFFFFFFFFFF\r\n"), Ok(None));
        assert!(!c.is_done());
    }
}
