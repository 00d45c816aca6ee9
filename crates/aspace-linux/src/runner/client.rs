//! [`LinuxRef`]: the `linux-ref` runner in a child process, line by line.

use crate::command::Line;
use crate::protocol::{BlockError, Header, Response};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::string::{String, ToString};
use std::vec::Vec;

/// A running `linux-ref` child: send it lines, get [`Response`]s.
pub struct LinuxRef {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    header: Header,
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl From<BlockError> for io::Error {
    fn from(e: BlockError) -> io::Error {
        invalid(e)
    }
}

impl LinuxRef {
    /// Where `spawn` looks for the binary: `$ASPACE_LINUX_REF`, else
    /// `linux-ref` in the directory of the running executable or its parent
    /// (a test binary lives in `target/<profile>/deps`, the runner in
    /// `target/<profile>`). Tests of this crate can pass
    /// `env!("CARGO_BIN_EXE_linux-ref")` to [`LinuxRef::spawn_at`] instead.
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("ASPACE_LINUX_REF") {
            return Some(PathBuf::from(p));
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [dir.join("linux-ref"), dir.parent()?.join("linux-ref")]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// Starts the binary found by [`LinuxRef::find_binary`].
    pub fn spawn() -> io::Result<LinuxRef> {
        let path = Self::find_binary()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "linux-ref binary not found"))?;
        Self::spawn_at(path)
    }

    /// Starts the binary at `path` and reads its header.
    pub fn spawn_at(path: impl AsRef<Path>) -> io::Result<LinuxRef> {
        Self::spawn_with(path, &[])
    }

    /// [`spawn_at`](Self::spawn_at) with options for the binary
    /// (`--memlock PAGES`, ...).
    pub fn spawn_with(path: impl AsRef<Path>, args: &[&str]) -> io::Result<LinuxRef> {
        let mut child = Command::new(path.as_ref())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = BufWriter::new(child.stdin.take().ok_or_else(|| invalid("no stdin"))?);
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| invalid("no stdout"))?);
        let mut me = LinuxRef {
            child,
            stdin: Some(stdin),
            stdout,
            header: Header::default(),
        };
        let block = me.read_block()?;
        let lines: Vec<&str> = block.iter().map(String::as_str).collect();
        me.header = Header::parse_block(&lines)?;
        Ok(me)
    }

    /// What the runner said at start: the window, the break.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read_block(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "linux-ref ended mid-block",
                ));
            }
            let line = line.trim_end_matches('\n');
            if line == "." {
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    }

    fn send(&mut self, text: &str) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| invalid("stdin closed"))?;
        writeln!(stdin, "{text}")?;
        stdin.flush()
    }

    fn receive(&mut self) -> io::Result<Response> {
        let block = self.read_block()?;
        let lines: Vec<&str> = block.iter().map(String::as_str).collect();
        Ok(Response::parse_block(&lines)?)
    }

    /// Runs one line and returns its response.
    pub fn run(&mut self, line: &Line) -> io::Result<Response> {
        self.send(&line.to_string())?;
        self.receive()
    }

    /// Runs one line of text (must not be blank or only a comment: those get
    /// no response).
    pub fn run_text(&mut self, text: &str) -> io::Result<Response> {
        self.send(text)?;
        self.receive()
    }

    /// Runs lines in batches of 32 (fewer round trips than one by one).
    pub fn run_all(&mut self, lines: &[Line]) -> io::Result<Vec<Response>> {
        Ok(self
            .run_all_raw(lines)?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// [`LinuxRef::run_all`], with each response's block as the runner
    /// printed it (its lines, without the final `.`).
    pub fn run_all_raw(&mut self, lines: &[Line]) -> io::Result<Vec<(Response, Vec<String>)>> {
        let mut out = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(32) {
            let mut text = String::new();
            for l in chunk {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            let stdin = self.stdin.as_mut().ok_or_else(|| invalid("stdin closed"))?;
            stdin.write_all(text.as_bytes())?;
            stdin.flush()?;
            for _ in chunk {
                let block = self.read_block()?;
                let lines: Vec<&str> = block.iter().map(String::as_str).collect();
                out.push((Response::parse_block(&lines)?, block));
            }
        }
        Ok(out)
    }

    /// Closes the runner's input and waits for it; its exit status is
    /// non-zero when an `expect` failed or a line could not be read.
    pub fn finish(mut self) -> io::Result<std::process::ExitStatus> {
        self.stdin = None;
        self.child.wait()
    }
}

impl Drop for LinuxRef {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}
