//! The path a relayed request takes below a backend's base URL, and the one rule that keeps it
//! there: no `.` or `..` segment and no backslash, however it is spelled.
//!
//! `Url::set_path`, like most HTTP servers, resolves dot segments, so `/v1/../../admin` sent to
//! a backend whose base is `http://host/v1` would reach `http://host/admin` carrying the
//! backend's own credential. Segments are checked after percent-decoding (`%2e%2E`, and again
//! for double encodings such as `%252e`), because the upstream decodes too; a backslash is
//! refused because some servers treat it as a separator. Used by the pass-through handler
//! (a 400 before anything is read), by the HTTP transport where it builds a URL, and by
//! `switchyard worker` for jobs taken from Redis.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// Decoding rounds tried: a path encoded more than this many times is refused outright.
const MAX_DECODES: usize = 3;

/// Why a relayed path is refused, for the client's 400 (or the worker's result).
pub fn check(path: &str) -> Result<(), &'static str> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if !path.starts_with('/') {
        return Err("the path must start with `/`");
    }
    let mut current: Cow<'_, [u8]> = Cow::Borrowed(path.as_bytes());
    for _ in 0..=MAX_DECODES {
        if leaves_its_parent(&current) {
            return Err("the path has a `.` or `..` segment or a backslash");
        }
        if !current.contains(&b'%') {
            return Ok(());
        }
        let decoded: Cow<'_, [u8]> = percent_decode(&current).into();
        if decoded == current {
            return Ok(());
        }
        current = Cow::Owned(decoded.into_owned());
    }
    Err("the path is percent-encoded too many times")
}

/// Whether `url`'s path is `base_path` or below it (`base_path` has no trailing `/`).
pub fn is_under(url: &url::Url, base_path: &str) -> bool {
    url.path()
        .strip_prefix(base_path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn leaves_its_parent(path: &[u8]) -> bool {
    path.contains(&b'\\') || path.split(|b| *b == b'/').any(|s| s == b"." || s == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_backslashes_are_refused_in_any_spelling() {
        for path in [
            "/../../admin/secret",
            "/%2e%2e/%2e%2e/admin",
            "/%2E%2e/admin",
            "/.%2E/admin",
            "/%252e%252e/admin",
            "/..\\..\\admin",
            "/files/%5c..%5cadmin",
            "/files/.",
            "/./files",
            "/files/..?x=1",
            "/a/%2e%2e%2fadmin",
            "files",
            "@evil.example/x",
        ] {
            assert!(check(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/chat/completions",
            "/files/file-abc/content",
            "/files?purpose=../batch",
            "/models/org/model.v2",
            "/a/...b/..c/c..",
            "/x/%41%42",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn under_means_the_base_path_or_a_child_of_it() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(is_under(&u("http://h/v1/files"), "/v1"));
        assert!(is_under(&u("http://h/v1"), "/v1"));
        assert!(is_under(&u("http://h/anything"), ""));
        assert!(!is_under(&u("http://h/v10/files"), "/v1"));
        assert!(!is_under(&u("http://h/admin"), "/v1"));
    }
}
