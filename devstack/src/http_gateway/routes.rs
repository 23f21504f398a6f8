//! Route selection, as the HTTP API does it: the most specific route wins (no greedy segment beats
//! a greedy one, then more literal segments, then more `{param}` segments, then an exact method
//! over `ANY`), else `$default`. Path parameters are percent-decoded; a greedy `{name+}` takes the
//! rest of the path and must not be empty.

use std::collections::BTreeMap;

use crate::percent::decode_url_component;
use crate::template::{HttpApi, HttpRoute};

/// One path segment pattern.
enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    Greedy(&'a str),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    path.trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy),
                    None => Segment::Param(name),
                },
                None => Segment::Literal(s),
            },
        )
        .collect()
}

/// Path parameters and a specificity score (no greedy segment, literal segments, named segments).
type PathMatch = (BTreeMap<String, String>, (usize, usize, usize));

fn match_path(pattern: &str, path: &str) -> Option<PathMatch> {
    let pat = segments(pattern);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = BTreeMap::new();
    let (mut literals, mut named) = (0, 0);
    for (i, seg) in pat.iter().enumerate() {
        match seg {
            Segment::Greedy(name) => {
                let rest = parts.get(i..).filter(|r| r.iter().any(|s| !s.is_empty()))?;
                params.insert(
                    (*name).to_owned(),
                    decode_url_component(&rest.join("/"), false),
                );
                return Some((params, (0, literals, named)));
            }
            Segment::Literal(l) => {
                if parts.get(i) != Some(l) {
                    return None;
                }
                literals += 1;
            }
            Segment::Param(name) => {
                let v = parts.get(i).filter(|v| !v.is_empty())?;
                params.insert((*name).to_owned(), decode_url_component(v, false));
                named += 1;
            }
        }
    }
    (parts.len() == pat.len()).then_some((params, (1, literals, named)))
}

/// The route of `api` that answers `method path`, with its path parameters; `None` is a 404.
pub(super) fn select<'a>(
    api: &'a HttpApi,
    method: &str,
    path: &str,
) -> Option<(&'a HttpRoute, BTreeMap<String, String>)> {
    type Scored<'a> = (
        &'a HttpRoute,
        BTreeMap<String, String>,
        (usize, usize, usize, usize),
    );
    let mut best: Option<Scored<'_>> = None;
    for r in &api.routes {
        if r.path == "$default" || !(r.method == method || r.method == "ANY") {
            continue;
        }
        if let Some((params, (exact, lit, named))) = match_path(&r.path, path) {
            let score = (exact, lit, named, usize::from(r.method != "ANY"));
            if best.as_ref().is_none_or(|b| score > b.2) {
                best = Some((r, params, score));
            }
        }
    }
    best.map(|(r, p, _)| (r, p)).or_else(|| {
        api.routes
            .iter()
            .find(|r| r.path == "$default")
            .map(|r| (r, BTreeMap::new()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_beat_parameters_and_greedy_paths() {
        let (p, exact) =
            match_path("/v1/notifications/{id}", "/v1/notifications/abc").unwrap_or_default();
        assert_eq!(p.get("id").map(String::as_str), Some("abc"));
        let (_, counts) =
            match_path("/v1/notifications/counts", "/v1/notifications/counts").unwrap_or_default();
        assert!(counts > exact);
        assert!(match_path("/v1/notifications/{id}", "/v1/notifications").is_none());
        let (g, _) = match_path("/files/{proxy+}", "/files/a/b%20c").unwrap_or_default();
        assert_eq!(g.get("proxy").map(String::as_str), Some("a/b c"));
    }
}
