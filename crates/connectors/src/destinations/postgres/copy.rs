//! A `COPY … FROM STDIN` kept open across writes, run by a thread that owns the connection.

use std::io::Write;

use postgres::{Client, Statement};

use super::encode::COPY_CHUNK;

/// A message to the thread that runs a COPY.
pub(super) enum Chunk {
    Data(Vec<u8>),
    /// Drop the COPY without finishing it: the server aborts it (and the transaction).
    Abort,
}

/// A `COPY … FROM STDIN` kept open across `write` calls until the flush. A thread owns the
/// connection while the COPY runs and sends the encoded chunks, so the consumer encodes the next
/// chunk while the server consumes the previous one, and one statement covers a flush interval
/// instead of one round trip per page.
pub(super) struct CopySession {
    binary: bool,
    chunks: Option<std::sync::mpsc::SyncSender<Chunk>>,
    /// Sent buffers come back for reuse.
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<(Client, std::result::Result<(), postgres::Error>)>>,
}

impl CopySession {
    pub(super) fn start(mut client: Client, copy: Statement, binary: bool) -> std::io::Result<Self> {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
        let (give_back, free) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("bizon-pg-copy".into()).spawn(move || {
            let result = (|| {
                let mut w = client.copy_in(&copy)?;
                for chunk in rx {
                    match chunk {
                        Chunk::Data(mut buf) => {
                            // a failed write means the server gave up: `finish` reports its error
                            if w.write_all(&buf).is_err() {
                                break;
                            }
                            buf.clear();
                            let _ = give_back.send(buf);
                        }
                        Chunk::Abort => return Ok(()),
                    }
                }
                w.finish().map(drop)
            })();
            (client, result)
        })?;
        let mut session = CopySession { binary, chunks: Some(chunks), free, thread: Some(thread) };
        if binary {
            let mut head = session.buffer();
            head.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            head.extend_from_slice(&0u32.to_be_bytes());
            head.extend_from_slice(&0u32.to_be_bytes());
            session.send(head);
        }
        Ok(session)
    }

    pub(super) fn buffer(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_else(|_| Vec::with_capacity(COPY_CHUNK + (COPY_CHUNK >> 2)))
    }

    /// False when the COPY thread has stopped (the server rejected the data): `end` tells why.
    pub(super) fn send(&mut self, buf: Vec<u8>) -> bool {
        self.chunks.as_ref().is_some_and(|c| c.send(Chunk::Data(buf)).is_ok())
    }

    /// Finish (or abort) the COPY and take the connection back.
    pub(super) fn end(mut self, abort: bool) -> (Client, std::result::Result<(), postgres::Error>) {
        if let Some(chunks) = self.chunks.take() {
            if abort {
                let _ = chunks.send(Chunk::Abort);
            } else if self.binary {
                let _ = chunks.send(Chunk::Data((-1i16).to_be_bytes().to_vec()));
            }
        }
        let thread = self.thread.take().expect("a session ends once");
        thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for CopySession {
    fn drop(&mut self) {
        // dropped without `end` (an error elsewhere): abort, the connection goes with the thread
        if let Some(chunks) = self.chunks.take() {
            let _ = chunks.send(Chunk::Abort);
        }
    }
}
