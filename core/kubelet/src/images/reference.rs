//! Image references in Docker's normalised form: `busybox` is
//! `docker.io/library/busybox:latest`, as containerd and the kubelet name images.

use super::{Error, Result};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// Normalises a reference the way Docker and the kubelet do: adds the `docker.io` domain and
/// the `library/` prefix for Docker Hub's official images, and the `latest` tag when the
/// reference has neither a tag nor a digest.
pub fn normalize(reference: &str) -> Result<String> {
    let invalid = |reason: &str| Error::Reference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    // The tag is after the last ':' of the last path component (a ':' before a '/' is a port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => (DEFAULT_DOMAIN, name.to_string()),
    };
    let domain = if domain == LEGACY_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return Err(invalid("invalid registry host"));
    }
    for component in path.split('/') {
        if !valid_path_component(component) {
            return Err(invalid(
                "repository path components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(tag), _) => {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(invalid("invalid tag"));
            }
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => {
            out.push(':');
            out.push_str(DEFAULT_TAG);
        }
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        super::archive::check_digest(digest).map_err(|reason| invalid(&reason))?;
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || b"._-".contains(b))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn docker_hub_names() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/redis:7",
                "docker.io/library/redis:7",
            ),
            ("kubernetes/pause", "docker.io/kubernetes/pause:latest"),
            (
                "gcr.io/google_containers/pause:2.0",
                "gcr.io/google_containers/pause:2.0",
            ),
            ("localhost/guestbook", "localhost/guestbook:latest"),
            ("127.0.0.1:5000/redis", "127.0.0.1:5000/redis:latest"),
            ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1"),
        ] {
            assert_eq!(normalize(input).as_deref().ok(), Some(want), "{input}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("busybox@{digest}")).ok(),
            Some(format!("docker.io/library/busybox@{digest}"))
        );
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a//b",
            "busybox:-x",
            "busybox@sha256:xyz",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }
}
