//! A real SMTP server for email tests: Python's aiosmtpd run by `scripts/services/smtp-sink` in
//! a private folder. Every message it accepts is kept as one JSON file (envelope, headers, parts,
//! raw text), read back in arrival order by [`SmtpSink::messages`]. It stops, and its folder is
//! removed, when dropped.

use std::path::PathBuf;

use serde_json::Value;

pub struct SmtpSink {
    /// `smtp://127.0.0.1:<port>`, as `SMTP_URL` takes it.
    pub url: String,
    dir: PathBuf,
}

impl SmtpSink {
    fn script() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/services/smtp-sink"
        ))
    }

    /// A running sink, or `None` (after [`crate::skip`]) when it cannot start here.
    pub fn start() -> Option<SmtpSink> {
        let dir =
            std::env::temp_dir().join(format!("herald-smtp-{}", uuid::Uuid::new_v4().simple()));
        let out = std::process::Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .stderr(std::process::Stdio::inherit())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmtpSink {
                url: String::from_utf8_lossy(&o.stdout).trim().to_owned(),
                dir,
            }),
            other => {
                crate::skip(&format!("the SMTP sink did not start: {other:?}"));
                None
            }
        }
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.join("messages"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first value of header `name` (any case) of a message from [`SmtpSink::messages`].
pub fn header<'a>(message: &'a Value, name: &str) -> Option<&'a str> {
    message["headers"]
        .as_array()?
        .iter()
        .find_map(|h| (h[0].as_str()?.eq_ignore_ascii_case(name)).then(|| h[1].as_str())?)
}
