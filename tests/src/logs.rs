//! What a piece of code logs, as text: [`LogCapture::during`] installs a subscriber for the
//! current thread while a future runs (a `#[tokio::test]` runs everything it does not spawn on
//! its own thread), at every level, in the functions' JSON format.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

/// The lines logged so far.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
}

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut lines) = self.lines.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Runs `work` with this capture as the thread's subscriber.
    pub async fn during<T>(&self, work: impl Future<Output = T>) -> T {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        work.await
    }

    pub fn text(&self) -> String {
        self.lines
            .lock()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }
}
