//! Where a response body ends: a length, chunked coding (scanned in place, trailers
//! consumed), or the connection's close.

/// Largest trailer section of a chunked response.
pub(super) const MAX_TRAILERS: usize = 16 * 1024;

/// Most chunk-extension bytes in one chunked response, as the general path allows.
pub(super) const MAX_EXTENSIONS: usize = 16 * 1024;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Tracks a response body as it passes, to know where it ends.
pub(super) struct Tracker {
    pub(super) framing: Framing,
    pub(super) remaining: u64,
    pub(super) chunks: ChunkScanner,
}

impl Tracker {
    pub(super) fn new(framing: Framing) -> Tracker {
        Tracker {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: ChunkScanner::default(),
        }
    }

    pub(super) fn framing(&self) -> Framing {
        self.framing
    }

    pub(super) fn done(&self) -> bool {
        match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunks.done(),
            Framing::UntilClose => false,
        }
    }

    /// How many of `bytes` belong to the body, and how many of those go on.
    pub(super) fn take(&mut self, bytes: &[u8]) -> Result<Taken, ChunkError> {
        let all = |n: usize| Taken {
            used: n,
            forward: n,
        };
        match self.framing {
            Framing::Length(_) => {
                let n = self.remaining.min(bytes.len() as u64);
                self.remaining -= n;
                Ok(all(n as usize))
            }
            Framing::Chunked => self.chunks.advance(bytes),
            Framing::UntilClose => Ok(all(bytes.len())),
        }
    }

    /// What ends the body once it is done: a chunked body's trailers are not passed
    /// on (no `Set-Cookie` can ride there), only the empty line that ends them.
    pub(super) fn ending(&self) -> &'static [u8] {
        if self.framing == Framing::Chunked && self.done() {
            b"\r\n"
        } else {
            b""
        }
    }
}

/// Bytes of a read that belong to the body (`used`), and how many of those, from the
/// start, are passed on (`forward`: all but trailers).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Taken {
    pub(super) used: usize,
    pub(super) forward: usize,
}

/// Follows chunked framing (RFC 9112 §7.1) without decoding it: the bytes pass through
/// as they are, and the scanner tells where the message ends. It is as strict as the
/// general path's decoder (hyper's): lines end in CRLF, and a size line holds the size,
/// optional spaces or tabs, and extensions after `;`. A proxy behind the gateway must
/// never be handed framing it could read differently.
#[derive(Debug, Default)]
pub(super) struct ChunkScanner {
    pub(super) state: ChunkState,
    pub(super) extension_bytes: usize,
    pub(super) trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
    /// In a chunk size: the size so far, its digit count.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size, in spaces or tabs: only `;` or the line's end may follow.
    SizeSpace(u64),
    /// In the size line's extensions.
    Extension(u64),
    /// After the size line's CR.
    SizeLf(u64),
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataCr,
    DataLf,
    /// In the trailer section: length of the current line, whether after its CR.
    Trailer {
        line: usize,
        cr: bool,
    },
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        ChunkState::Size { size: 0, digits: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body")]
pub(super) struct ChunkError;

impl ChunkScanner {
    pub(super) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes bytes up to the end of the message; says how many belong to it and how
    /// many come before the trailer section.
    pub(super) fn advance(&mut self, input: &[u8]) -> Result<Taken, ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        let mut forward = None;
        while i < input.len() {
            if forward.is_none() && matches!(self.state, Trailer { .. } | Done) {
                forward = Some(i);
            }
            if let Data(left) = self.state {
                let take = left.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data(left - take)
                };
                continue;
            }
            if self.state == Done {
                break;
            }
            let byte = input[i];
            i += 1;
            self.state = match (self.state, byte) {
                (Size { size, digits }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    if digits >= 15 {
                        return Err(ChunkError);
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    Size {
                        size: size * 16 + digit,
                        digits: digits + 1,
                    }
                }
                (Size { size, digits: 1.. }, b' ' | b'\t') | (SizeSpace(size), b' ' | b'\t') => {
                    SizeSpace(size)
                }
                (Size { size, digits: 1.. } | SizeSpace(size), b';') => Extension(size),
                (Size { size, digits: 1.. } | SizeSpace(size) | Extension(size), b'\r') => {
                    SizeLf(size)
                }
                (Extension(size), byte) if byte != b'\n' => {
                    self.extension_bytes += 1;
                    if self.extension_bytes > MAX_EXTENSIONS {
                        return Err(ChunkError);
                    }
                    Extension(size)
                }
                (SizeLf(size), b'\n') => after_size(size),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => ChunkState::default(),
                (Trailer { line, cr: true }, b'\n') => {
                    if line == 0 {
                        Done
                    } else {
                        Trailer { line: 0, cr: false }
                    }
                }
                (Trailer { line, cr: false }, b'\r') => Trailer { line, cr: true },
                (Trailer { line, cr: false }, byte) if byte != b'\n' => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ChunkError);
                    }
                    Trailer {
                        line: line + 1,
                        cr: false,
                    }
                }
                _ => return Err(ChunkError),
            };
        }
        Ok(Taken {
            used: i,
            forward: forward.unwrap_or(i),
        })
    }
}

pub(super) fn after_size(size: u64) -> ChunkState {
    if size == 0 {
        ChunkState::Trailer { line: 0, cr: false }
    } else {
        ChunkState::Data(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn scan_in_pieces(input: &[u8], piece: usize) -> Result<(usize, bool), ChunkError> {
        let mut scanner = ChunkScanner::default();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += scanner.advance(part)?.used;
            if scanner.done() {
                break;
            }
        }
        Ok((used, scanner.done()))
    }

    #[test]
    pub(super) fn chunked_message_ends_where_it_says_in_any_split() {
        let message = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        let mut with_next = message.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for piece in 1..=with_next.len() {
            assert_eq!(
                scan_in_pieces(&with_next, piece).unwrap(),
                (message.len(), true),
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    pub(super) fn trailers_are_consumed_but_not_passed_on() {
        let body = b"3\r\nabc\r\n0\r\n";
        let trailers = b"set-cookie: s=1\r\nx-t: 2\r\n\r\n";
        let message = [&body[..], &trailers[..]].concat();
        for split in 1..message.len() {
            let mut tracker = Tracker::new(Framing::Chunked);
            let mut passed = Vec::new();
            for part in [&message[..split], &message[split..]] {
                let taken = tracker.take(part).unwrap();
                assert_eq!(taken.used, part.len());
                passed.extend_from_slice(&part[..taken.forward]);
            }
            assert!(tracker.done());
            passed.extend_from_slice(tracker.ending());
            assert_eq!(passed, b"3\r\nabc\r\n0\r\n\r\n", "split at {split}");
        }
    }

    #[test]
    pub(super) fn unfinished_chunked_message_is_not_done() {
        assert_eq!(scan_in_pieces(b"5\r\nhel", 100).unwrap(), (6, false));
        assert_eq!(scan_in_pieces(b"0\r\n", 100).unwrap(), (3, false));
    }

    #[test]
    pub(super) fn malformed_chunk_sizes_are_errors() {
        // Bare line feeds, digits after a space, a space before any digit.
        for bad in [
            &b"2\nok\r\n0\r\n\r\n"[..],
            b"2 5\r\nok\r\n0\r\n\r\n",
            b" 2\r\nok\r\n0\r\n\r\n",
            b"2;x\nok\r\n0\r\n\r\n",
            b"2\r\nok\n0\r\n\r\n",
            b"2\r\nok\r\n0\r\nx-t: 1\n\r\n",
            b"2\r\nok\r\n0\r\n\n",
        ] {
            for piece in 1..=bad.len() {
                assert!(
                    scan_in_pieces(bad, piece).is_err(),
                    "{:?} split every {piece}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        assert!(scan_in_pieces(b"2 \t;x=\"y z\"\r\nok\r\n0\r\n\r\n", 100).is_ok());
        assert!(scan_in_pieces(b"zz\r\n", 100).is_err());
        assert!(scan_in_pieces(b"\r\n", 100).is_err());
        assert!(scan_in_pieces(b"5\r\nhelloXX", 100).is_err());
        assert!(scan_in_pieces(b"1000000000000000\r\n", 100).is_err());
    }
}
