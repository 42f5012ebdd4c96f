//! libgit2's process-wide settings: the network timeout, and the TCP stream it connects with.
//! The crate's only unsafe code lives here.
//!
//! libgit2 writes an HTTP request's headers and its body in separate writes on a socket without
//! TCP_NODELAY, so Nagle's algorithm holds the body back until the server acknowledges the
//! headers, which a server with delayed ACKs does only after ~40 ms: every POST of a fetch or a
//! push paid that wait. [`register_stream`] gives libgit2 a stream over `std::net::TcpStream`
//! that sets TCP_NODELAY. libgit2 builds its TLS streams on the registered one and its SSH
//! transport uses it too, so https and ssh get it as well.
//!
//! Why this is sound:
//! - `Stream` is `repr(C)` and starts with libgit2's `git_stream` (include/git2/sys/stream.h,
//!   version 1), so the pointer libgit2 is given is a valid `git_stream *`, and the callbacks
//!   may cast it back. libgit2's SSH transport reads the socket of any standard stream as its
//!   own `git_socket_stream` (`{ git_stream parent; char *host; char *port; int s; }`,
//!   src/libgit2/streams/socket.h of the bundled libgit2 1.9), so `Stream` continues with those
//!   fields in that order and keeps the connected socket's descriptor in `fd`.
//! - libgit2 owns the pointer from `init` until it calls `free`, which takes the `Box` back;
//!   it calls a stream's callbacks one at a time, so `&mut Stream` is never aliased.
//! - No callback unwinds: errors become libgit2 error codes and messages.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The timeout the stream connects and waits with, in milliseconds.
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(crate::config::DEFAULT_NETWORK_TIMEOUT.as_millis() as u64);

/// How long libgit2 waits to connect to a git server, and for each answer of a connected one
/// (a silent server, a stalled transfer). The stream reads its copy at every connection.
/// libgit2's own copy, which its SSH transport reads, is a C global that is not synchronised,
/// so it is set only while this is the process's one thread (before the async runtime
/// starts); returns whether it was.
pub fn set_network_timeout(timeout: Duration) -> bool {
    TIMEOUT_MS.store(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    register_stream();
    let single_threaded = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Threads:", "1"]));
    if !single_threaded {
        return false;
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: both calls write a C global that libgit2 reads when it opens a connection; no other
    // thread exists (checked above), so nothing reads it while it is written.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms).is_ok()
            && git2::opts::set_server_timeout_in_milliseconds(ms).is_ok()
    }
}

/// Makes libgit2 connect through [`Stream`]; once per process, before the first connection.
pub fn register_stream() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        libgit2_sys::init();
        let mut registration = Registration { version: 1, init: Some(init), wrap: None };
        // SAFETY: libgit2 copies the registration under its registry's lock; `init` has the
        // signature stream.h declares.
        let status = unsafe { git_stream_register(GIT_STREAM_STANDARD, &mut registration) };
        if status != 0 {
            tracing::warn!("libgit2 kept its own TCP stream (git_stream_register: {status})");
        }
    });
}

/// Connected streams so far in this process (for the tests that check the stream is used).
pub fn connections() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

const GIT_STREAM_STANDARD: c_int = 1;

unsafe extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
}

#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut Stream, *const c_char, *const c_char) -> c_int>,
    wrap: Option<unsafe extern "C" fn(*mut *mut Stream, *mut Stream, *const c_char) -> c_int>,
}

/// libgit2's `git_stream` followed by the rest of its `git_socket_stream`, then ours.
#[repr(C)]
struct Stream {
    version: c_int,
    /// The bit fields `encrypted : 1, proxy_support : 1`: neither.
    flags: c_uint,
    timeout: c_int,
    connect_timeout: c_int,
    connect: Option<unsafe extern "C" fn(*mut Stream) -> c_int>,
    certificate: Option<unsafe extern "C" fn(*mut *mut c_void, *mut Stream) -> c_int>,
    set_proxy: Option<unsafe extern "C" fn(*mut Stream, *const c_void) -> c_int>,
    read: Option<unsafe extern "C" fn(*mut Stream, *mut c_void, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut Stream, *const c_char, usize, c_int) -> isize>,
    close: Option<unsafe extern "C" fn(*mut Stream) -> c_int>,
    free: Option<unsafe extern "C" fn(*mut Stream)>,
    host: *mut c_char,
    port: *mut c_char,
    fd: c_int,
    address: (CString, CString),
    socket: Option<TcpStream>,
    /// Until the server's first byte: when the network timeout, counted from the start of the
    /// connection attempt, runs out. A connection slow to open does not earn a full timeout of
    /// silence on top.
    first_byte_by: Option<Instant>,
}

unsafe extern "C" fn init(out: *mut *mut Stream, host: *const c_char, port: *const c_char) -> c_int {
    // SAFETY: libgit2 passes NUL-terminated strings it owns for the duration of the call.
    let (host, port) = unsafe { (CStr::from_ptr(host).to_owned(), CStr::from_ptr(port).to_owned()) };
    let timeout = c_int::try_from(TIMEOUT_MS.load(Ordering::Relaxed)).unwrap_or(c_int::MAX);
    let mut stream = Box::new(Stream {
        version: 1,
        flags: 0,
        timeout,
        connect_timeout: timeout,
        connect: Some(connect),
        certificate: None,
        set_proxy: None,
        read: Some(read),
        write: Some(write),
        close: Some(close),
        free: Some(free),
        host: std::ptr::null_mut(),
        port: std::ptr::null_mut(),
        fd: -1,
        address: (host, port),
        socket: None,
        first_byte_by: None,
    });
    stream.host = stream.address.0.as_ptr().cast_mut();
    stream.port = stream.address.1.as_ptr().cast_mut();
    // SAFETY: `out` is libgit2's out-parameter; it takes ownership and hands it back to `free`.
    unsafe { *out = Box::into_raw(stream) };
    0
}

/// Records `message` as libgit2's last error and returns `code`.
fn fail(message: String, code: c_int) -> c_int {
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: libgit2 copies the NUL-terminated message.
    unsafe { libgit2_sys::git_error_set_str(libgit2_sys::GIT_ERROR_NET as c_int, message.as_ptr()) };
    code
}

fn io_failure(what: &str, error: std::io::Error) -> c_int {
    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        let secs = TIMEOUT_MS.load(Ordering::Relaxed) as f64 / 1000.0;
        return fail(format!("{what}: timed out after {secs}s (the network timeout)"), libgit2_sys::GIT_TIMEOUT);
    }
    fail(format!("{what}: {error}"), -1)
}

/// The stream behind libgit2's pointer.
fn stream<'a>(raw: *mut Stream) -> &'a mut Stream {
    // SAFETY: `raw` came from `init`'s `Box::into_raw` and is not yet freed; libgit2 makes one
    // call at a time on a stream (see the module's comment).
    unsafe { &mut *raw }
}

unsafe extern "C" fn connect(raw: *mut Stream) -> c_int {
    let stream = stream(raw);
    let host = stream.address.0.to_string_lossy().into_owned();
    let port: u16 = match stream.address.1.to_str().ok().and_then(|p| p.parse().ok()) {
        Some(port) => port,
        None => return fail(format!("{host}: invalid port {:?}", stream.address.1), -1),
    };
    let timeout = (stream.connect_timeout > 0).then(|| Duration::from_millis(stream.connect_timeout as u64));
    let started = Instant::now();
    let addresses = match (host.as_str(), port).to_socket_addrs() {
        Ok(addresses) => addresses,
        Err(e) => return fail(format!("failed to resolve address for {host}: {e}"), -1),
    };
    let mut last = None;
    for address in addresses {
        let attempt = match timeout {
            Some(timeout) => match remaining(started, timeout) {
                Some(left) => TcpStream::connect_timeout(&address, left),
                None => Err(ErrorKind::TimedOut.into()),
            },
            None => TcpStream::connect(address),
        };
        match attempt {
            Ok(socket) => {
                let io_timeout = (stream.timeout > 0).then(|| Duration::from_millis(stream.timeout as u64));
                let set = socket
                    .set_nodelay(true)
                    .and_then(|()| socket.set_read_timeout(io_timeout))
                    .and_then(|()| socket.set_write_timeout(io_timeout));
                if let Err(e) = set {
                    return io_failure(&format!("{host}:{port}"), e);
                }
                stream.fd = socket.as_raw_fd();
                stream.socket = Some(socket);
                stream.first_byte_by = timeout.map(|timeout| started + timeout);
                CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => io_failure(&format!("failed to connect to {host}:{port}"), e),
        None => fail(format!("failed to resolve address for {host}: no address"), -1),
    }
}

/// What is left of `timeout` since `started`; `None` once it has run out.
fn remaining(started: Instant, timeout: Duration) -> Option<Duration> {
    timeout.checked_sub(started.elapsed()).filter(|left| !left.is_zero())
}

unsafe extern "C" fn read(raw: *mut Stream, data: *mut c_void, len: usize) -> isize {
    let stream = stream(raw);
    let (full, first_byte_by) = (stream.timeout, stream.first_byte_by);
    let Some(socket) = stream.socket.as_mut() else {
        return fail("read on a stream that is not connected".into(), -1) as isize;
    };
    // SAFETY: libgit2 passes a buffer of `len` writable bytes.
    let buffer = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
    if let Some(by) = first_byte_by {
        let left = by.checked_duration_since(Instant::now()).filter(|left| !left.is_zero());
        let Some(left) = left else {
            return io_failure("reading from the git server", ErrorKind::TimedOut.into()) as isize;
        };
        if let Err(e) = socket.set_read_timeout(Some(left)) {
            return io_failure("reading from the git server", e) as isize;
        }
    }
    loop {
        match socket.read(buffer) {
            Ok(n) => {
                // Progress: from now on each read may wait the whole timeout.
                if first_byte_by.is_some() && n > 0 {
                    stream.first_byte_by = None;
                    let full = (full > 0).then(|| Duration::from_millis(full as u64));
                    if let Err(e) = socket.set_read_timeout(full) {
                        return io_failure("reading from the git server", e) as isize;
                    }
                }
                return n as isize;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return io_failure("reading from the git server", e) as isize,
        }
    }
}

unsafe extern "C" fn write(raw: *mut Stream, data: *const c_char, len: usize, _flags: c_int) -> isize {
    let Some(socket) = stream(raw).socket.as_mut() else {
        return fail("write on a stream that is not connected".into(), -1) as isize;
    };
    // SAFETY: libgit2 passes `len` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    loop {
        match socket.write(bytes) {
            Ok(n) => return n as isize,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return io_failure("writing to the git server", e) as isize,
        }
    }
}

unsafe extern "C" fn close(raw: *mut Stream) -> c_int {
    let stream = stream(raw);
    if let Some(socket) = stream.socket.take() {
        let _ = socket.shutdown(Shutdown::Both);
    }
    stream.fd = -1;
    0
}

unsafe extern "C" fn free(raw: *mut Stream) {
    // SAFETY: `raw` is the pointer `init` leaked; libgit2 frees a stream once and uses it no more.
    drop(unsafe { Box::from_raw(raw) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libgit2_connects_through_this_stream() {
        use std::net::TcpListener;
        register_stream();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/qa.git", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let n = socket.read(&mut request).unwrap();
            socket.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let before = connections();
        let mut remote = git2::Remote::create_detached(url).unwrap();
        let error = remote.connect(git2::Direction::Fetch).unwrap_err();
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /qa.git/info/refs?service=git-upload-pack"), "{request}");
        assert!(error.message().contains("404"), "{error}");
        assert_eq!(connections(), before + 1);
    }

    /// The offsets libgit2 1.9 reads (x86_64 and aarch64 Linux): `git_stream` is 4 ints then 7
    /// pointers; its SSH transport finds `s` after the two string pointers.
    #[test]
    fn the_layout_is_libgit2s() {
        assert_eq!(std::mem::offset_of!(Stream, connect), 16);
        assert_eq!(std::mem::offset_of!(Stream, free), 64);
        assert_eq!(std::mem::offset_of!(Stream, host), 72);
        assert_eq!(std::mem::offset_of!(Stream, fd), 88);
    }
}
