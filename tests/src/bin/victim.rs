//! A real process for the tests to fault: it makes one kind of call again and again and reports
//! one line per call, `<CLOCK_MONOTONIC ns> ok` or `<ns> <errno number>`.
//!
//!   victim OP ARG
//!
//! OP is one of chaos's operations; ARG is a directory of the victim's own for file operations,
//! or `ip:port` (TCP), a UNIX socket's path, or `-` (a loopback listener of its own) for connect;
//! `stream ip:port` keeps one TCP connection to an echo server and sends a byte through it per
//! call.
//! The loop makes no other call of the same kind (no allocation after
//! start, no unlock after a lock), so the failures it reports are exactly the ones chaos injected.
//! Reports go to stdout, except for `write`, whose reports would themselves be writes, and for a
//! victim in a container, whose stdout the test does not read: those go as datagrams to the UNIX
//! socket named by `$VICTIM_REPORT_SOCKET`.

use std::{
    ffi::CString,
    fmt::Write as _,
    fs::File,
    io,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::net::UnixDatagram},
    path::Path,
    thread,
    time::Duration,
};

const INTERVAL: Duration = Duration::from_millis(20);
/// What a file victim's file holds when it starts.
const FILE_DATA: &[u8] = b"victim data";
/// Set across `execve` so the new image knows the exec it came from succeeded.
const EXECED: &str = "VICTIM_EXECED";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(op), Some(arg)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: victim OP ARG");
        std::process::exit(2);
    };
    // A write victim's stdout is a write of its own; a victim in a container has no stdout the
    // test reads.
    let mut report =
        Reporter::new(op == "write" || std::env::var_os("VICTIM_REPORT_SOCKET").is_some());
    if op == "exec" && std::env::var_os(EXECED).is_some() {
        report.call(Ok(()));
    }
    let mut call = make_call(op, arg);
    loop {
        let result = call();
        report.call(result);
        thread::sleep(INTERVAL);
    }
}

/// Lines are kept in a buffer allocated once and flushed when the channel accepts them: during a
/// `write` or `send` fault on the victim, flushing waits for the fault to end.
struct Reporter {
    buffer: String,
    socket: Option<UnixDatagram>,
}

impl Reporter {
    fn new(use_socket: bool) -> Self {
        let socket = use_socket.then(|| {
            let path =
                std::env::var("VICTIM_REPORT_SOCKET").expect("VICTIM_REPORT_SOCKET for write");
            let socket = UnixDatagram::unbound().expect("unix socket");
            socket.connect(path).expect("connect the report socket");
            socket
        });
        Reporter {
            buffer: String::with_capacity(1 << 20),
            socket,
        }
    }

    fn call(&mut self, result: io::Result<()>) {
        let now = chaos_tests::monotonic_ns();
        let _ = match result {
            Ok(()) => writeln!(self.buffer, "{now} ok"),
            Err(err) => writeln!(self.buffer, "{now} {}", err.raw_os_error().unwrap_or(-1)),
        };
        self.flush();
    }

    fn flush(&mut self) {
        while !self.buffer.is_empty() {
            let sent = match &self.socket {
                // One datagram per line, through send(2): std's UnixDatagram::send is a write(2).
                Some(socket) => {
                    let line_end = self.buffer.find('\n').map_or(self.buffer.len(), |i| i + 1);
                    // SAFETY: send(2) from a buffer we own on a socket we own.
                    let n = unsafe {
                        libc::send(socket.as_raw_fd(), self.buffer.as_ptr().cast(), line_end, 0)
                    };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                }
                None => {
                    // SAFETY: write(2) from a buffer we own to our stdout.
                    let n =
                        unsafe { libc::write(1, self.buffer.as_ptr().cast(), self.buffer.len()) };
                    if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                }
            };
            match sent {
                Ok(n) => drop(self.buffer.drain(..n)),
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => std::process::exit(0),
                Err(_) => return,
            }
        }
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// ENOSPC when `stat` reports no free block, as `df` would show it full.
fn full_if_no_free_blocks(stat: &libc::statfs) -> io::Result<()> {
    if stat.f_bfree == 0 && stat.f_bavail == 0 {
        Err(io::Error::from_raw_os_error(libc::ENOSPC))
    } else {
        Ok(())
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.to_str().expect("utf-8 path")).expect("no NUL")
}

type Call = Box<dyn FnMut() -> io::Result<()>>;

fn make_call(op: &str, arg: &str) -> Call {
    let dir = Path::new(arg);
    let file = dir.join("file");
    // The network ops take an address, not a directory.
    if !matches!(op, "connect" | "stream") {
        std::fs::create_dir_all(dir).expect("victim directory");
        std::fs::write(&file, FILE_DATA).expect("victim file");
    }
    let c_file = c_path(&file);
    match op {
        "open" => Box::new(move || File::open(&file).map(drop)),
        "read" => {
            let handle = File::open(&file).expect("open");
            let mut buf = [0u8; 4];
            Box::new(move || {
                // SAFETY: pread(2) into a buffer we own.
                check(unsafe {
                    libc::pread(handle.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                } as i32)
            })
        }
        // Not operations of chaos fail: the file's data read back whole, by pread(2) or by
        // read(2) from the start, and compared with what was written; EBADMSG when it differs
        // (`chaos corrupt-io`).
        "pread-data" | "read-data" => {
            let handle = File::open(&file).expect("open");
            let positional = op == "pread-data";
            let mut buf = [0u8; FILE_DATA.len()];
            Box::new(move || {
                let fd = handle.as_raw_fd();
                // SAFETY: pread(2), lseek(2) and read(2) on a file we own into a buffer we own.
                let read = unsafe {
                    if positional {
                        libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
                    } else {
                        libc::lseek(fd, 0, libc::SEEK_SET);
                        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
                    }
                };
                check(read as i32)?;
                if buf[..] == FILE_DATA[..] {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(libc::EBADMSG))
                }
            })
        }
        // The same through two iovecs, by readv(2) from the start or preadv(2): ENODATA when
        // fewer bytes came back than asked (`chaos corrupt-io --short`), EBADMSG when they
        // differ, EFAULT when the iovecs' lengths are not what this process set.
        "readv-data" | "preadv-data" => {
            let handle = File::open(&file).expect("open");
            let positional = op == "preadv-data";
            let mut buf = [0u8; FILE_DATA.len()];
            let split = FILE_DATA.len() / 2;
            Box::new(move || {
                let fd = handle.as_raw_fd();
                let (head, tail) = buf.split_at_mut(split);
                let iovecs = [
                    libc::iovec {
                        iov_base: head.as_mut_ptr().cast(),
                        iov_len: head.len(),
                    },
                    libc::iovec {
                        iov_base: tail.as_mut_ptr().cast(),
                        iov_len: tail.len(),
                    },
                ];
                // SAFETY: preadv(2), lseek(2) and readv(2) on a file we own into buffers we own.
                let read = unsafe {
                    if positional {
                        libc::preadv(fd, iovecs.as_ptr(), 2, 0)
                    } else {
                        libc::lseek(fd, 0, libc::SEEK_SET);
                        libc::readv(fd, iovecs.as_ptr(), 2)
                    }
                };
                check(read as i32)?;
                let errno =
                    if iovecs[0].iov_len != split || iovecs[1].iov_len != FILE_DATA.len() - split {
                        libc::EFAULT
                    } else if (read as usize) < FILE_DATA.len() {
                        libc::ENODATA
                    } else if buf[..] != FILE_DATA[..] {
                        libc::EBADMSG
                    } else {
                        return Ok(());
                    };
                Err(io::Error::from_raw_os_error(errno))
            })
        }
        "write" => {
            let handle = File::options().write(true).open(&file).expect("open");
            Box::new(move || {
                // SAFETY: pwrite(2) of a static byte on a file we own.
                let written =
                    unsafe { libc::pwrite(handle.as_raw_fd(), b"x".as_ptr().cast(), 1, 0) };
                check(written as i32)
            })
        }
        "exec" => {
            let exe = CString::new("/proc/self/exe").unwrap();
            let argv: Vec<CString> = std::env::args().map(|a| CString::new(a).unwrap()).collect();
            let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            argv_ptrs.push(std::ptr::null());
            let mut env: Vec<CString> = std::env::vars()
                .filter(|(k, _)| k != EXECED)
                .map(|(k, v)| CString::new(format!("{k}={v}")).unwrap())
                .collect();
            env.push(CString::new(format!("{EXECED}=1")).unwrap());
            let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
            env_ptrs.push(std::ptr::null());
            Box::new(move || {
                let _ = (&argv, &env);
                // SAFETY: NULL-terminated argv and envp of C strings that outlive the call.
                check(unsafe { libc::execve(exe.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) })
            })
        }
        // glibc's fork() (the clone syscall) and the fork syscall, in turn: every syscall the
        // operation names must fail on every rung.
        "fork" => Box::new({
            let mut calls = 0_u64;
            move || {
                calls += 1;
                // SAFETY: the child only calls _exit.
                let pid = unsafe {
                    if calls.is_multiple_of(2) {
                        libc::syscall(libc::SYS_fork) as libc::pid_t
                    } else {
                        libc::fork()
                    }
                };
                match pid {
                    -1 => Err(io::Error::last_os_error()),
                    // SAFETY: the child leaves at once, without running anything of the parent's.
                    0 => unsafe { libc::_exit(0) },
                    child => {
                        let mut status = 0;
                        // SAFETY: waits for our own child into a local.
                        unsafe { libc::waitpid(child, &mut status, 0) };
                        Ok(())
                    }
                }
            }
        }),
        "mmap" => Box::new(|| {
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
            // SAFETY: a fresh anonymous mapping, unmapped at once.
            let ptr =
                unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, flags, -1, 0) };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the mapping made just above, not used after this.
            unsafe { libc::munmap(ptr, 4096) };
            Ok(())
        }),
        "unlink" => {
            let victim = dir.join("unlink-me");
            Box::new(move || {
                let _ = File::create(&victim);
                std::fs::remove_file(&victim)
            })
        }
        "rmdir" => {
            let victim = dir.join("rmdir-me");
            Box::new(move || {
                let _ = std::fs::create_dir(&victim);
                std::fs::remove_dir(&victim)
            })
        }
        "mkdir" => {
            let victim = dir.join("mkdir-me");
            Box::new(move || {
                let result = std::fs::create_dir(&victim);
                let _ = std::fs::remove_dir(&victim);
                result
            })
        }
        "rename" => {
            let (from, to) = (dir.join("rename-a"), dir.join("rename-b"));
            Box::new(move || {
                let _ = File::create(&from);
                let result = std::fs::rename(&from, &to);
                let _ = std::fs::remove_file(&to);
                result
            })
        }
        "link" => {
            let link = dir.join("hard-link");
            Box::new(move || {
                let result = std::fs::hard_link(&file, &link);
                let _ = std::fs::remove_file(&link);
                result
            })
        }
        "symlink" => {
            let link = dir.join("sym-link");
            Box::new(move || {
                let result = std::os::unix::fs::symlink(&file, &link);
                let _ = std::fs::remove_file(&link);
                result
            })
        }
        // SAFETY: a C string the closure owns.
        "truncate" => Box::new(move || check(unsafe { libc::truncate(c_file.as_ptr(), 4) })),
        // SAFETY: as above.
        "chmod" => Box::new(move || check(unsafe { libc::chmod(c_file.as_ptr(), 0o644) })),
        // SAFETY: as above.
        "chown" => Box::new(move || check(unsafe { libc::chown(c_file.as_ptr(), 0, 0) })),
        "ioctl" => {
            let handle = File::open(&file).expect("open");
            Box::new(move || {
                let mut available: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int into a local.
                check(unsafe { libc::ioctl(handle.as_raw_fd(), libc::FIONREAD, &mut available) })
            })
        }
        // Taking a shared lock again is allowed; no unlock, which would be a second lock call.
        "lock" => {
            let handle = File::open(&file).expect("open");
            // SAFETY: flock(2) on a file we own.
            Box::new(move || check(unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_SH) }))
        }
        // Each of the stat syscalls in turn (statx is what std's metadata() makes): every one
        // the operation names must fail on every rung.
        "stat" => {
            let handle = File::open(&file).expect("open");
            let mut calls = 0_u64;
            Box::new(move || {
                calls += 1;
                let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
                let buf = stat.as_mut_ptr();
                let path = c_file.as_ptr();
                // SAFETY: the stat syscalls of a NUL-terminated path or an open descriptor into
                // a struct we own.
                let rc = unsafe {
                    match calls % 5 {
                        0 => libc::syscall(libc::SYS_stat, path, buf),
                        1 => libc::syscall(libc::SYS_lstat, path, buf),
                        2 => libc::syscall(libc::SYS_fstat, handle.as_raw_fd(), buf),
                        3 => libc::syscall(libc::SYS_newfstatat, libc::AT_FDCWD, path, buf, 0),
                        _ => return std::fs::metadata(&file).map(drop),
                    }
                };
                check(rc as libc::c_int)
            })
        }
        // Not operations of chaos fail: statfs()/fstatfs() of the file's filesystem, reported
        // as ENOSPC when it says no block is free (`chaos disk full`).
        "statfs" => Box::new(move || {
            let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
            // SAFETY: statfs(2) of a NUL-terminated path into a struct we own.
            check(unsafe { libc::statfs(c_file.as_ptr(), stat.as_mut_ptr()) })?;
            // SAFETY: statfs() returned 0, so it filled the struct.
            full_if_no_free_blocks(&unsafe { stat.assume_init() })
        }),
        "fstatfs" => {
            let handle = File::open(&file).expect("open");
            Box::new(move || {
                let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
                // SAFETY: fstatfs(2) of a file we own into a struct we own.
                check(unsafe { libc::fstatfs(handle.as_raw_fd(), stat.as_mut_ptr()) })?;
                // SAFETY: fstatfs() returned 0, so it filled the struct.
                full_if_no_free_blocks(&unsafe { stat.assume_init() })
            })
        }
        // Not an operation of chaos fail: a 4 KiB write into the page cache, then fsync(), which
        // writes it back from this process (`chaos disk error --pid`); reports the fsync.
        "write-fsync" => {
            let handle = File::options().write(true).open(&file).expect("open");
            Box::new(move || {
                std::os::unix::fs::FileExt::write_all_at(&handle, &[b'v'; 4096], 0)?;
                handle.sync_all()
            })
        }
        // A 32-bit syscall from this 64-bit process: close(-1) through `int $0x80`, i386's
        // syscall 6, which is x86_64's lstat (EBADF each time).
        #[cfg(target_arch = "x86_64")]
        "compat-close" => Box::new(|| {
            let rc: i64;
            // SAFETY: close(-1) on the ia32 entry touches no memory; `int $0x80` preserves
            // every register but rax. Its first argument goes in ebx, which LLVM keeps for
            // itself: swapped in and back.
            unsafe {
                std::arch::asm!(
                    "xchg {fd}, rbx",
                    "int 0x80",
                    "xchg {fd}, rbx",
                    fd = inout(reg) -1i64 => _,
                    inlateout("rax") 6i64 => rc,
                );
            }
            match rc {
                0 => Ok(()),
                rc => Err(io::Error::from_raw_os_error(-rc as i32)),
            }
        }),
        "fsync" => {
            let handle = File::options().write(true).open(&file).expect("open");
            // SAFETY: fsync(2) on a file we own.
            Box::new(move || check(unsafe { libc::fsync(handle.as_raw_fd()) }))
        }
        // A path is a UNIX stream socket's.
        "connect" if arg.starts_with('/') => {
            let path = arg.to_owned();
            Box::new(move || std::os::unix::net::UnixStream::connect(&path).map(drop))
        }
        // "-": a listener of its own on loopback, which a container without a network has too.
        "connect" if arg == "-" => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
            let address = listener.local_addr().unwrap();
            Box::new(move || {
                let client = TcpStream::connect(address)?;
                listener.accept().map(|_| drop(client))
            })
        }
        "connect" => {
            let address: SocketAddr = arg.parse().expect("connect takes ip:port, a path or -");
            Box::new(move || TcpStream::connect(address).map(drop))
        }
        // One long-lived TCP connection to an echo server at ip:port: each call writes a byte
        // and reads it back; after a failure the next call connects again first.
        "stream" => {
            use std::io::{Read as _, Write as _};
            let address: SocketAddr = arg.parse().expect("stream takes ip:port");
            let mut stream: Option<TcpStream> = None;
            Box::new(move || {
                let connection = match &mut stream {
                    Some(connection) => connection,
                    None => stream.insert(TcpStream::connect(address)?),
                };
                let mut byte = [0u8; 1];
                let echoed = connection
                    .write_all(b"x")
                    .and_then(|()| connection.read_exact(&mut byte));
                if echoed.is_err() {
                    stream = None;
                }
                echoed
            })
        }
        "bind" => Box::new(|| UdpSocket::bind("127.0.0.1:0").map(drop)),
        // std's bind makes the socket and binds it; only the listen() in it is a listen call.
        "listen" => Box::new(|| TcpListener::bind("127.0.0.1:0").map(drop)),
        "accept" => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
            let address = listener.local_addr().unwrap();
            let mut clients = Vec::with_capacity(4096);
            Box::new(move || {
                clients.push(TcpStream::connect(address)?);
                listener.accept().map(drop)
            })
        }
        "send" => {
            let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
            let address = receiver.local_addr().unwrap();
            let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
            Box::new(move || {
                let _ = &receiver;
                sender.send_to(b"x", address).map(drop)
            })
        }
        "recv" => {
            let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
            let address = receiver.local_addr().unwrap();
            let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");
            let mut buf = [0u8; 8];
            Box::new(move || {
                sender.send_to(b"x", address)?;
                receiver.recv(&mut buf).map(drop)
            })
        }
        "socket" => Box::new(|| {
            // SAFETY: socket(2) with constant arguments; the fd is closed below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            // SAFETY: closes the fd just made.
            check(fd).map(|()| unsafe { libc::close(fd) }).map(drop)
        }),
        other => panic!("unknown op {other}"),
    }
}
