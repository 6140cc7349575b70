//! Just enough of the redis protocol (RESP2) for `GET` and `SET`: commands go out as arrays of
//! bulk strings, and one reply is read back.

use std::fmt;
use std::io::{self, BufRead, Read as _, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest bulk reply accepted: a guestbook is small, and a bad length must not make us
/// allocate gigabytes.
const MAX_BULK: usize = 16 << 20;

/// How long to wait for redis to accept a connection, and then for each reply.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` (`None` for the nil bulk string `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...` (`None` for the nil array `*-1`)
    Array(Option<Vec<Reply>>),
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The server sent something that is not RESP.
    Protocol(String),
    /// The server answered with an error reply.
    Server(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(m) => write!(f, "bad reply: {m}"),
            Error::Server(m) => write!(f, "redis: {m}"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The command `args` as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply (nested arrays included) from `r`.
pub fn read_reply(r: &mut impl BufRead) -> Result<Reply, Error> {
    let line = read_line(r)?;
    let (kind, rest) = match line.split_first() {
        Some((k, rest)) => (*k, rest),
        None => return Err(Error::Protocol("empty line".into())),
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(parse_int(rest)?)),
        b'$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_BULK)
                .ok_or_else(|| Error::Protocol(format!("bulk length {len}")))?;
            let mut data = vec![0; len + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(Error::Protocol("bulk string not ended by CRLF".into()));
            }
            data.truncate(len);
            Ok(Reply::Bulk(Some(data)))
        }
        b'*' => {
            let n = parse_int(rest)?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= 1024)
                .ok_or_else(|| Error::Protocol(format!("array length {n}")))?;
            let items = (0..n)
                .map(|_| read_reply(r))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Reply::Array(Some(items)))
        }
        other => Err(Error::Protocol(format!(
            "unknown reply type {:?}",
            char::from(other)
        ))),
    }
}

/// A line without its CRLF.
fn read_line(r: &mut impl BufRead) -> Result<Vec<u8>, Error> {
    let mut line = Vec::new();
    // A reply line is short; `take` bounds a server that never sends CRLF.
    let n = r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(Error::Protocol("line not ended by CRLF".into()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_int(digits: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("bad number {:?}", String::from_utf8_lossy(digits))))
}

/// Sends one command to redis at `host:port` on a fresh connection and reads its reply; an
/// error reply becomes [`Error::Server`].
pub fn command(host: &str, port: u16, args: &[&[u8]]) -> Result<Reply, Error> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return exchange(stream, args),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    })))
}

fn exchange(mut stream: TcpStream, args: &[&[u8]]) -> Result<Reply, Error> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&encode(args))?;
    let mut reader = io::BufReader::new(stream);
    match read_reply(&mut reader)? {
        Reply::Error(message) => Err(Error::Server(message)),
        reply => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, Error> {
        read_reply(&mut io::Cursor::new(bytes))
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"SET", b"messages", b"hi,there"]),
            b"*3\r\n$3\r\nSET\r\n$8\r\nmessages\r\n$8\r\nhi,there\r\n"
        );
        assert_eq!(encode(&[b"GET", b""]), b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
        // Binary-safe: CRLF inside an argument is counted, not interpreted.
        assert_eq!(encode(&[b"a\r\nb"]), b"*1\r\n$4\r\na\r\nb\r\n");
        // Lengths are bytes, not characters.
        assert_eq!(encode(&["é".as_bytes()]), "*1\r\n$2\r\né\r\n".as_bytes());
    }

    #[test]
    fn reads_replies() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR wrong type\r\n").unwrap(),
            Reply::Error("ERR wrong type".into())
        );
        assert_eq!(parse(b":-12\r\n").unwrap(), Reply::Integer(-12));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").unwrap(),
            Reply::Bulk(Some(b"a\r\nbc".to_vec()))
        );
        assert_eq!(parse(b"$0\r\n\r\n").unwrap(), Reply::Bulk(Some(vec![])));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$1\r\nx\r\n:1\r\n").unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"x".to_vec())),
                Reply::Integer(1)
            ]))
        );
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Array(None));
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in [
            &b""[..],
            b"\r\n",
            b"+OK\n",
            b"?what\r\n",
            b":abc\r\n",
            b"$3\r\nab\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*2\r\n+OK\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
