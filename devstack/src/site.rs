//! The demo page's files: the web folder (`--web-dir`, default `web/`), served read-only at `/` on
//! the HTTP API's port. None of this exists in AWS.
//!
//! Contract: only `GET`/`HEAD`, and only for requests that no route of the template matches (the
//! HTTP gateway asks [`Site::serve`] last — API routes always win, so a template with a `$default`
//! route hides the page). `/` and `dir/` serve `index.html`; dot-files, `node_modules/` and
//! anything outside the folder (`..`, symlinks out) are 404. Files are read on every request and
//! marked `no-store`.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::percent::decode_url_component;

/// The web folder, served read-only.
#[derive(Debug, Clone)]
pub struct Site {
    root: PathBuf,
}

impl Site {
    /// The site of `dir`, or `None` when `dir` is not a folder (devstack then serves no page).
    pub fn open(dir: &Path) -> Option<Site> {
        let root = dir.canonicalize().ok().filter(|r| r.is_dir())?;
        Some(Site { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The answer for `path`, or `None` (the caller's 404) for other methods and missing files.
    pub async fn serve(&self, method: &Method, path: &str) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let relative = safe_relative_path(path)?;
        let root = self.root.clone();
        let want_dir = path.ends_with('/');
        let head = method == Method::HEAD;
        let found = tokio::task::spawn_blocking(move || read_file(&root, &relative, want_dir))
            .await
            .ok()??;
        Some(match found {
            Found::Redirect => (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, format!("{path}/"))],
            )
                .into_response(),
            Found::File { bytes, file } => {
                let mut r = Response::new(if head {
                    Body::empty()
                } else {
                    Body::from(bytes)
                });
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                // A development server: every reload sees the files as they are now.
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                r
            }
        })
    }
}

enum Found {
    File {
        bytes: Vec<u8>,
        file: PathBuf,
    },
    /// A folder asked for without its trailing `/`: relative links in its index need it.
    Redirect,
}

/// The decoded path below the root, or `None` if any segment could leave the folder or is
/// hidden (`.`/`..`/dot-files, `node_modules`, back-slashes, NUL).
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = decode_url_component(path, false);
    let mut out = PathBuf::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg == "node_modules" || seg.contains(['\\', '\0']) {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn read_file(root: &Path, relative: &Path, want_dir: bool) -> Option<Found> {
    let mut file = root.join(relative).canonicalize().ok()?;
    // A symlink may point anywhere: only what resolves inside the folder is served.
    if !file.starts_with(root) {
        return None;
    }
    if file.is_dir() {
        if !want_dir && file != root {
            return Some(Found::Redirect);
        }
        file = file.join("index.html");
    }
    let bytes = std::fs::read(&file).ok()?;
    Some(Found::File { bytes, file })
}

/// The content type of a file by its extension. Modules must be `text/javascript`: browsers
/// refuse to run an ES module served with any non-JavaScript type.
pub fn content_type(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "ts" | "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_folder_or_reach_hidden_files() {
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            safe_relative_path("/test/a%20b.js"),
            Some(PathBuf::from("test/a b.js"))
        );
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/secret",
            "/a/%2E%2E/%2E%2E/x",
            "/.git/config",
            "/node_modules/playwright-core/package.json",
            "/a%5C..%5Cb",
            "/a%00b",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn modules_are_javascript() {
        assert_eq!(
            content_type(Path::new("herald-client.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("LICENSE")),
            "application/octet-stream"
        );
    }
}
