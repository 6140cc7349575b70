//! The small part of HTTP/1.x the frontend speaks: a request head in, one response out, and
//! the connection closed.

use std::io::{self, BufRead, Read as _, Write};

/// Longest request head accepted.
const MAX_HEAD: u64 = 16 * 1024;

/// A request's method, path and decoded query parameters (in order; repeats kept).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Request {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request head (the request line and headers, whose values are ignored); the body,
/// if any, is not read. `Ok(None)` when the client closed without sending anything.
pub fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut limited = r.by_ref().take(MAX_HEAD);
    let mut line = String::new();
    if limited.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let request = parse_request_line(&line)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad request line"))?;
    loop {
        let mut header = String::new();
        if limited.read_line(&mut header)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head not ended by an empty line",
            ));
        }
        if header.trim_end_matches(['\r', '\n']).is_empty() {
            return Ok(Some(request));
        }
    }
}

/// `GET /guestbook.php?cmd=get HTTP/1.1` into its parts; `None` when it is not a request line.
pub fn parse_request_line(line: &str) -> Option<Request> {
    let mut parts = line.trim_end_matches(['\r', '\n']).split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !version.starts_with("HTTP/1.")
        || !target.starts_with('/')
    {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: method.to_string(),
        path: percent_decode(path),
        query: parse_query(query),
    })
}

/// `a=1&b=x%20y+z` into `[("a", "1"), ("b", "x y z")]`, the way PHP fills `$_GET`: `+` is a
/// space, `%XX` a byte, a parameter without `=` has the empty value, empty pieces are skipped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits stays as it is, and bytes that
/// do not form UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escape {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `<` too, so that a message can never close a script element it is embedded in.
            c if u32::from(c) < 0x20 || c == '<' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a complete response and says the connection will close.
pub fn respond(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        w.write_all(body)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_query(q)
    }

    fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_books_queries() {
        assert_eq!(
            pairs("cmd=set&key=messages&value=hello,world"),
            owned(&[
                ("cmd", "set"),
                ("key", "messages"),
                ("value", "hello,world")
            ])
        );
        assert_eq!(
            pairs("cmd=get&key=messages"),
            owned(&[("cmd", "get"), ("key", "messages")])
        );
    }

    #[test]
    fn decodes_like_php() {
        assert_eq!(
            pairs("value=a%20b+c%2Bd%2c%C3%A9"),
            owned(&[("value", "a b c+d,é")])
        );
        assert_eq!(pairs("a&&b=&=x"), owned(&[("a", ""), ("b", ""), ("", "x")]));
        assert_eq!(
            pairs("v=50%&w=%zz%4"),
            owned(&[("v", "50%"), ("w", "%zz%4")])
        );
        assert_eq!(pairs("v=%FF"), owned(&[("v", "\u{fffd}")]));
        assert_eq!(pairs("v=a=b"), owned(&[("v", "a=b")]));
        assert_eq!(pairs(""), owned(&[]));
    }

    #[test]
    fn parses_request_lines() {
        let r = parse_request_line("GET /guestbook.php?cmd=get&key=messages HTTP/1.1\r\n")
            .expect("valid");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/guestbook.php");
        assert_eq!(r.param("cmd"), Some("get"));
        assert_eq!(r.param("value"), None);
        let r = parse_request_line("GET / HTTP/1.0\r\n").expect("valid");
        assert_eq!((r.path.as_str(), r.query.len()), ("/", 0));
        for bad in [
            "",
            "GET\r\n",
            "GET /\r\n",
            "GET / SPDY/3\r\n",
            "GET http://x/ HTTP/1.1\r\n",
            "GET / HTTP/1.1 extra\r\n",
        ] {
            assert_eq!(parse_request_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_a_request_head() {
        let raw = b"GET /?a=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nbody";
        let r = read_request(&mut io::Cursor::new(&raw[..]))
            .expect("valid")
            .expect("a request");
        assert_eq!(r.query, owned(&[("a", "1")]));
        assert!(
            read_request(&mut io::Cursor::new(&b""[..]))
                .expect("eof")
                .is_none()
        );
        assert!(read_request(&mut io::Cursor::new(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..])).is_err());
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(read_request(&mut io::Cursor::new(huge.as_bytes())).is_err());
    }

    #[test]
    fn escapes_json() {
        assert_eq!(json_string("a,b"), r#""a,b""#);
        assert_eq!(
            json_string("say \"hi\"\\\n\u{1}</script>"),
            r#""say \"hi\"\\\n\u0001\u003c/script>""#
        );
    }
}
