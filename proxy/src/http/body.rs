//! Message bodies, passed on in their own framing: the proxy finds where a body
//! ends (a length, the chunked framing, or the sender closing) and forwards its
//! bytes as they come, never holding more than one read buffer of it.

use super::head::Framing;

/// Longest chunk-size line (digits and extensions) and trailer section the
/// proxy passes on; longer is malformed. As large as a request head may be.
pub const MAX_CHUNK_METADATA_BYTES: usize = super::server::MAX_REQUEST_HEADER_BYTES;

/// Where a body stands while it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunked),
    /// Everything until the sender closes.
    UntilClose,
    Done,
}

/// The chunked framing's state (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: State,
    /// Bytes of size lines and trailers seen (bounded by MAX_CHUNK_METADATA_BYTES).
    metadata: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first digit of a chunk size.
    SizeStart,
    Size(u64),
    /// Whitespace or an extension after the size, up to the CR.
    SizeRest(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Finished,
}

impl Body {
    pub(crate) fn new(framing: Framing) -> Body {
        match framing {
            Framing::Empty | Framing::Length(0) => Body::Done,
            Framing::Length(length) => Body::Length(length),
            Framing::Chunked => Body::Chunked(Chunked {
                state: State::SizeStart,
                metadata: 0,
            }),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub(crate) fn done(&self) -> bool {
        *self == Body::Done
    }

    /// How many of `bytes` (the next bytes from the sender) belong to the body;
    /// the body is [`Body::done`] when they complete it.
    pub(crate) fn take(&mut self, bytes: &[u8]) -> Result<usize, String> {
        match self {
            Body::Done => Ok(0),
            Body::UntilClose => Ok(bytes.len()),
            Body::Length(left) => {
                let taken =
                    usize::try_from(*left).map_or(bytes.len(), |left| left.min(bytes.len()));
                *left -= taken as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(taken)
            }
            Body::Chunked(chunked) => {
                let taken = chunked.take(bytes)?;
                if chunked.state == State::Finished {
                    *self = Body::Done;
                }
                Ok(taken)
            }
        }
    }

    /// The sender closed: fine for a body that runs until then or is done.
    pub(crate) fn closed(&mut self) -> Result<(), String> {
        match self {
            Body::UntilClose | Body::Done => {
                *self = Body::Done;
                Ok(())
            }
            Body::Length(left) => Err(format!(
                "closed with {left} bytes of the body still to come"
            )),
            Body::Chunked(_) => Err("closed before the chunked body's last chunk".to_owned()),
        }
    }
}

impl Chunked {
    /// Steps through `bytes` until they end or the body does; returns how many it took.
    fn take(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let mut at = 0;
        while at < bytes.len() && self.state != State::Finished {
            if let State::Data(left) = self.state {
                let taken = usize::try_from(left)
                    .map_or(bytes.len() - at, |left| left.min(bytes.len() - at));
                at += taken;
                let left = left - taken as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            let byte = bytes[at];
            at += 1;
            self.metadata += 1;
            if self.metadata > MAX_CHUNK_METADATA_BYTES {
                return Err(format!(
                    "chunk sizes and trailers longer than {MAX_CHUNK_METADATA_BYTES} bytes (MAX_CHUNK_METADATA_BYTES)"
                ));
            }
            self.state = match (self.state, byte) {
                (State::SizeStart, _) => State::Size(hex_digit(byte)?),
                (State::Size(size), b'\r') => State::SizeLf(size),
                (State::Size(size), b';' | b' ' | b'\t') => State::SizeRest(size),
                (State::Size(size), _) => {
                    if size >> 60 != 0 {
                        return Err("chunk size overflows 64 bits".to_owned());
                    }
                    State::Size(size << 4 | hex_digit(byte)?)
                }
                (State::SizeRest(size), b'\r') => State::SizeLf(size),
                (State::SizeRest(size), b'\n') => {
                    return Err(format!("chunk size line {size:x} ends in a bare LF"))
                }
                (State::SizeRest(size), _) => State::SizeRest(size),
                (State::SizeLf(0), b'\n') => State::TrailerStart,
                (State::SizeLf(size), b'\n') => {
                    // Data does not count as metadata.
                    State::Data(size)
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::SizeStart,
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Finished,
                (state, byte) => {
                    return Err(format!(
                        "chunked body: unexpected byte 0x{byte:02x} ({state:?})"
                    ))
                }
            };
        }
        Ok(at)
    }
}

fn hex_digit(byte: u8) -> Result<u64, String> {
    match byte {
        b'0'..=b'9' => Ok(u64::from(byte - b'0')),
        b'a'..=b'f' => Ok(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Ok(u64::from(byte - b'A' + 10)),
        _ => Err(format!("chunk size: 0x{byte:02x} is not a hex digit")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `step`, returning how many the body took.
    fn feed(body: &mut Body, bytes: &[u8], step: usize) -> Result<usize, String> {
        let mut taken = 0;
        for piece in bytes.chunks(step) {
            let n = body.take(piece)?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok(taken)
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_whatever_the_pieces() {
        let body =
            b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        for step in [1, 2, 3, 7, body.len()] {
            let mut state = Body::new(Framing::Chunked);
            assert_eq!(feed(&mut state, body, step), Ok(end), "step {step}");
            assert!(state.done());
        }
    }

    #[test]
    fn bad_chunk_framing_is_refused_naming_it() {
        for (bytes, says) in [
            (&b"zz\r\n"[..], "not a hex digit"),
            (b"5\r\nhelloXX", "unexpected byte"),
            (b"11111111111111111\r\n", "overflows"),
            (b"5 \n", "bare LF"),
        ] {
            let error = Body::new(Framing::Chunked).take(bytes).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
        let mut state = Body::new(Framing::Chunked);
        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_METADATA_BYTES + 1, b'a');
        let error = state.take(&long).unwrap_err();
        assert!(error.contains("MAX_CHUNK_METADATA_BYTES"), "{error}");
    }

    #[test]
    fn lengths_and_closes() {
        let mut state = Body::new(Framing::Length(4));
        assert_eq!(state.take(b"ab"), Ok(2));
        assert!(state.closed().unwrap_err().contains("2 bytes"));
        let mut state = Body::new(Framing::Length(4));
        assert_eq!(state.take(b"abcdef"), Ok(4));
        assert!(state.done());
        let mut state = Body::new(Framing::UntilClose);
        assert_eq!(state.take(b"abcdef"), Ok(6));
        assert_eq!(state.closed(), Ok(()));
        assert!(state.done());
    }
}
