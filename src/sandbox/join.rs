//! The rendezvous of runs that share one container ([`crate::join`] decides their key): the
//! first to arrive makes the container and serves the others the descriptors of its user and
//! mount namespaces; they enter them with `setns(2)` instead of making their own.
//!
//! The meeting point is an abstract Unix socket named after the caller's uid and a hash of the
//! key and the user's secret (`cache::Cache::join_secret`: job ids are public, and an abstract
//! name has no permissions, so another user could otherwise take it first). It exists only
//! while a process holds it open, so nothing is left on the node after any exit, kill or
//! `scancel`, and binding it is the election: the run whose `bind` succeeds leads. Nobody else
//! can join: the server answers only peers of its own uid (`SO_PEERCRED`), and the kernel lets
//! only the namespace owner's uid enter a user namespace; a joiner accepts descriptors only
//! from a server of its own uid, so a name held by another user makes it run alone, warned.
//! Every wait is bounded: a full queue, a name bound without a listener, a silent leader.
//!
//! The leader's *server* is a child of the leader cloned once the container is made, which
//! never execs: it dies with the leader (`PR_SET_PDEATHSIG`) and otherwise leaves when the
//! expected count has joined or none came for [`IDLE`]. It needs no other cleanup: the
//! namespaces live as long as any process is in them, so the last rank to exit, whichever,
//! tears the container down. It is cloned without an exit signal, so the leader's workload,
//! whose child it becomes at the exec, gets no SIGCHLD and sees no child in `wait` (it stays a
//! zombie until that workload exits).
//!
//! A leader that dies before serving closes the socket: waiting joiners see the connection end
//! and elect a new leader among themselves. A joiner whose container would differ (another
//! image, other binds or GPUs: a different [`fingerprint`]) runs alone, warned, and takes no
//! place of the expected count. A leader that exits ends its server too, whether or not the
//! count was reached: a rank that arrives later leads a container of its own. MPI ranks wait
//! for each other in `MPI_Init`, so the first rank is still there when the last arrives.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
    UnixAddr, sockopt,
};

use crate::plan::LaunchPlan;

/// How long a joiner waits for the leader's container (its mounts, GPU binds included).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server waits for the next joiner before it leaves.
pub const IDLE: Duration = Duration::from_secs(30);

/// The exchange: a joiner sends its container's [`fingerprint`]; the server replies with its own
/// and one byte, [`WITHOUT_USER`] or [`WITH_USER`] (passed with it: the user namespace's
/// descriptor for the latter, the mount namespace's, and the container root's), or [`DIFFERS`]
/// (nothing passed).
const REPLY_LEN: usize = 33;
const WITHOUT_USER: u8 = 0;
const WITH_USER: u8 = 1;
const DIFFERS: u8 = 2;

/// How long the server waits for a connected joiner's fingerprint (sent right after connecting).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a name may stay bound without a listener before a joiner stops taking it for a
/// leader between `bind` and `listen` (microseconds apart).
const REFUSED_LIMIT: Duration = Duration::from_secs(2);

/// What this run does with its container.
pub enum Role {
    /// Makes the container, then serves the others ([`Leader::serve`]).
    Leader(Leader),
    /// Enters the leader's namespaces ([`Joined::enter`]).
    Joiner(Joined),
    /// Makes a container of its own: nothing to join, or joining failed (the warning says why).
    Alone(Option<String>),
}

/// The leader's bound and listening socket, until the server takes it over.
pub struct Leader {
    socket: OwnedFd,
    count: Option<u32>,
    fingerprint: [u8; 32],
}

/// The leader's namespaces and its container root, received.
pub struct Joined {
    user: Option<OwnedFd>,
    mount: OwnedFd,
    root: OwnedFd,
}

/// What makes two runs' containers the same: the image, the id maps, the root's kind and every
/// mount operation (binds, GPU devices and libraries, account files). Per-run settings (command,
/// environment, working directory) are left out: each joined rank keeps its own.
pub fn fingerprint(plan: &LaunchPlan) -> Option<[u8; 32]> {
    let container = (&plan.rootfs, &plan.user_namespace, &plan.namespaces, &plan.root, &plan.mounts);
    // serde_json refuses a path that is not UTF-8: no fingerprint then, rather than one that
    // every such plan shares.
    let bytes = serde_json::to_vec(&container).ok()?;
    ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().try_into().ok()
}

/// Finds this run's role: leader, joiner or alone. Never fails the run: whatever goes wrong on
/// the way makes it run alone, with a warning. `secret` is the user's (`cache::Cache::join_secret`):
/// mixed into the socket's name, it keeps other users from taking the name first.
pub fn rendezvous(plan: &LaunchPlan, secret: Option<&[u8; 32]>) -> Role {
    let Some(key) = &plan.join.key else { return Role::Alone(None) };
    let alone = |why: String| {
        Role::Alone(Some(format!(
            "this run gets a container of its own instead of joining {key} ({why}); MPI's single-copy \
             transfers to the other ranks will not work"
        )))
    };
    let Some(fingerprint) = fingerprint(plan) else {
        return alone(
            "its plan has a path that is not UTF-8, so it cannot be compared with the others'".into(),
        );
    };
    let uid = nix::unistd::getuid().as_raw();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(secret.map_or(&[][..], |s| &s[..]));
    hash.update(key.as_bytes());
    let hex: String = hash.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("gpurun-join/{uid}/{hex}");
    let role = elect(&name, uid, plan.join.count, fingerprint).unwrap_or_else(alone);
    tracing::debug!(
        key,
        role = match &role {
            Role::Leader(_) => "leader",
            Role::Joiner(_) => "joiner",
            Role::Alone(_) => "alone",
        },
        "join rendezvous"
    );
    role
}

/// What one attempt to join found.
enum Attempt {
    Joined(Role),
    /// The name is bound but nobody listens: a leader between `bind` and `listen`, or one
    /// going away.
    Refused,
    /// The leader went away before it answered, or its queue stayed full: elect again.
    Again,
}

/// Binds the name (leader) or connects to it and waits for the leader's reply (joiner); a
/// leader that goes away before replying makes the election start again. A name that stays
/// bound without a listener for [`REFUSED_LIMIT`] is not a leader's: this run goes alone.
fn elect(name: &str, uid: u32, count: Option<u32>, fingerprint: [u8; 32]) -> Result<Role, String> {
    let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| format!("socket name: {e}"))?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut refused_since: Option<Instant> = None;
    let mut pause = Duration::from_micros(100);
    loop {
        let sock = stream_socket()?;
        match socket::bind(sock.as_raw_fd(), &addr) {
            Ok(()) => {
                socket::listen(&sock, Backlog::MAXCONN).map_err(|e| format!("listen: {e}"))?;
                return Ok(Role::Leader(Leader { socket: sock, count, fingerprint }));
            }
            Err(Errno::EADDRINUSE) => {}
            Err(e) => return Err(format!("bind the socket @{name}: {e}")),
        }
        match join(&addr, uid, deadline, fingerprint)? {
            Attempt::Joined(role) => return Ok(role),
            Attempt::Refused => {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() > REFUSED_LIMIT {
                    return Err(format!("@{name} is bound, but nobody listens on it"));
                }
            }
            Attempt::Again => refused_since = None,
        }
        if Instant::now() >= deadline {
            return Err(format!("no run answered on @{name} within {} s", SETUP_TIMEOUT.as_secs()));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn stream_socket() -> Result<OwnedFd, String> {
    socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("create a Unix socket: {e}"))
}

/// One attempt to join the leader at `addr`. Every wait is bounded by `deadline`: the connect
/// too, which blocks while the leader's queue is full (its server not yet started, or more
/// ranks than `somaxconn`).
fn join(addr: &UnixAddr, uid: u32, deadline: Instant, fingerprint: [u8; 32]) -> Result<Attempt, String> {
    let conn = stream_socket()?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let timeout = nix::sys::time::TimeVal::new(left.as_secs() as _, left.subsec_micros() as _);
    socket::setsockopt(&conn, sockopt::SendTimeout, &timeout).map_err(|e| format!("set a timeout: {e}"))?;
    match socket::connect(conn.as_raw_fd(), addr) {
        Ok(()) => {}
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => return Ok(Attempt::Refused),
        Err(Errno::EAGAIN | Errno::EINTR) => return Ok(Attempt::Again),
        Err(e) => return Err(format!("connect to the first run: {e}")),
    }
    // The connect may have waited: what is left of the deadline bounds the answer.
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let timeout = nix::sys::time::TimeVal::new(left.as_secs() as _, left.subsec_micros() as _);
    socket::setsockopt(&conn, sockopt::ReceiveTimeout, &timeout)
        .map_err(|e| format!("set a timeout: {e}"))?;
    let peer =
        socket::getsockopt(&conn, sockopt::PeerCredentials).map_err(|e| format!("its credentials: {e}"))?;
    if peer.uid() != uid {
        return Err(format!("its socket is held by uid {}, not by you", peer.uid()));
    }
    // The server compares it with its own, so that a run it cannot take in holds no place of
    // the expected count.
    match socket::send(conn.as_raw_fd(), &fingerprint, MsgFlags::MSG_NOSIGNAL) {
        Ok(_) => {}
        Err(Errno::ECONNRESET | Errno::EPIPE) => return Ok(Attempt::Again),
        Err(e) => return Err(format!("send to the first run: {e}")),
    }
    let (reply, fds) = match receive(conn.as_fd()) {
        Ok(got) => got,
        Err(Errno::EAGAIN) => {
            return Err(format!("the first run did not answer within {} s", SETUP_TIMEOUT.as_secs()));
        }
        Err(Errno::ECONNRESET | Errno::EPIPE) => return Ok(Attempt::Again),
        Err(e) => return Err(format!("receive its answer: {e}")),
    };
    if reply.len() < REPLY_LEN {
        return Ok(Attempt::Again);
    }
    if reply[..32] != fingerprint || reply[32] == DIFFERS {
        return Err("its container differs from the one this run asks for: another image, other binds, \
                    GPUs or options"
            .into());
    }
    let mut fds = fds.into_iter();
    let missing = || "its answer lacks a namespace descriptor".to_string();
    let user = if reply[32] == WITH_USER { Some(fds.next().ok_or_else(missing)?) } else { None };
    let mount = fds.next().ok_or_else(missing)?;
    let root = fds.next().ok_or_else(missing)?;
    Ok(Attempt::Joined(Role::Joiner(Joined { user, mount, root })))
}

/// Reads one reply (up to [`REPLY_LEN`] bytes) and the descriptors passed with it.
fn receive(conn: BorrowedFd) -> nix::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = [0u8; REPLY_LEN];
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg =
        socket::recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: SCM_RIGHTS installed these descriptors in our table for us alone.
            fds.extend(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let len = msg.bytes;
    Ok((buf[..len].to_vec(), fds))
}

impl Joined {
    /// Enters the leader's user namespace, then its mount namespace, then its root. setns(2)
    /// makes the mount namespace's root mount this process's root, which is the container's only
    /// when the leader's own root was that mount (not so under a chroot): the root the leader
    /// pivoted into is passed as a descriptor and entered with `fchdir` and `chroot(".")`. The
    /// caller must be single-threaded (setns(2) refuses a user namespace otherwise); as the
    /// namespace's owner it has every capability in it afterwards, which the workload's start
    /// drops as for any run.
    pub fn enter(self) -> std::io::Result<()> {
        if let Some(user) = &self.user {
            nix::sched::setns(user, nix::sched::CloneFlags::CLONE_NEWUSER)
                .map_err(|e| context(e, format!("enter the shared user namespace: {e}")))?;
        }
        nix::sched::setns(&self.mount, nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| context(e, format!("enter the shared mount namespace: {e}")))?;
        nix::unistd::fchdir(&self.root)
            .and_then(|()| nix::unistd::chroot("."))
            .map_err(|e| context(e, format!("enter the shared container root: {e}")))
    }
}

/// `err` as an I/O error of the same kind whose message says what failed.
fn context(err: Errno, what: String) -> std::io::Error {
    std::io::Error::new(std::io::Error::from(err).kind(), what)
}

/// The descriptors of the caller's own user and mount namespaces and, once it is made, of the
/// container root, for the server to hand out.
pub struct Namespaces {
    user: Option<OwnedFd>,
    mount: OwnedFd,
    root: Option<OwnedFd>,
}

impl Namespaces {
    /// Opens them: called by the leader right after it made them, while the host's `/proc` is
    /// still where it was. `user`: whether the plan has a user namespace (real root has none).
    pub fn open_own(user: bool) -> std::io::Result<Namespaces> {
        let open = |what: &str| -> std::io::Result<OwnedFd> {
            let path = format!("/proc/self/ns/{what}");
            let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC;
            nix::fcntl::open(path.as_str(), flags, nix::sys::stat::Mode::empty())
                .map_err(|e| context(e, format!("open {path}: {e}")))
        };
        Ok(Namespaces {
            user: if user { Some(open("user")?) } else { None },
            mount: open("mnt")?,
            root: None,
        })
    }

    /// Opens the container root, once the leader has pivoted into it.
    pub fn open_root(&mut self) -> std::io::Result<()> {
        let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
        let root = nix::fcntl::open("/", flags, nix::sys::stat::Mode::empty())
            .map_err(|e| context(e, format!("open the container root: {e}")))?;
        self.root = Some(root);
        Ok(())
    }
}

impl Leader {
    /// Starts the server for the others. A failure is only logged: the socket closes with this
    /// process's exec, and the waiting runs elect a leader among themselves.
    pub fn serve(self, namespaces: Namespaces) {
        let leader = nix::unistd::getpid();
        let Leader { socket, count, fingerprint } = self;
        let server = Box::new(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                server(leader, &socket, &namespaces, count, fingerprint)
            }))
            .unwrap_or(1)
        });
        let mut stack = vec![0u8; 128 * 1024];
        // SAFETY: without CLONE_VM the server runs on its own copy of this memory (the stack
        // buffer included), as after fork, and the caller is single-threaded (launch's
        // precondition), so no lock is held by a thread that does not exist in the copy. The
        // server accepts, checks and sends, well within 128 KiB of stack. No exit signal: see the
        // module documentation.
        let started = unsafe { nix::sched::clone(server, &mut stack, nix::sched::CloneFlags::empty(), None) };
        if let Err(e) = started {
            tracing::debug!(error = %e, "could not start the join server; the others elect a new leader");
        }
    }
}

/// The server's life: answer joiners of our uid until `count` runs share the container (this
/// one included), nobody came for [`IDLE`], or the leader died.
fn server(
    leader: nix::unistd::Pid,
    socket: &OwnedFd,
    ns: &Namespaces,
    count: Option<u32>,
    fingerprint: [u8; 32],
) -> isize {
    // SAFETY: prctl, getppid, signal and sigprocmask with integer arguments or a local set. The
    // job's signals end it as they end the ranks, whatever dispositions and mask the launcher
    // passed down.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != leader.as_raw() {
            return 0;
        }
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    crate::sys::null_stdio();
    let mut keep = vec![socket.as_raw_fd(), ns.mount.as_raw_fd()];
    keep.extend(ns.user.as_ref().map(|u| u.as_raw_fd()));
    keep.extend(ns.root.as_ref().map(|r| r.as_raw_fd()));
    crate::sys::close_all_but(&keep);
    // It needs none of the capabilities it holds in the container's user namespace; keeping
    // them where capset fails harms nothing outside that namespace, so the result is not checked.
    crate::sys::caps::clear();
    let me = nix::unistd::getuid().as_raw();
    let mut joined = 1u32;
    while count.is_none_or(|c| joined < c) {
        let mut poll = [nix::poll::PollFd::new(socket.as_fd(), nix::poll::PollFlags::POLLIN)];
        let idle = nix::poll::PollTimeout::try_from(IDLE).unwrap_or(nix::poll::PollTimeout::MAX);
        match nix::poll::poll(&mut poll, idle) {
            Ok(0) => return 0,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
        let Ok(conn) = socket::accept4(socket.as_raw_fd(), SockFlag::SOCK_CLOEXEC) else { continue };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        // A peer of another uid gets nothing. (Another user's uid is unmapped here and reads as
        // the overflow uid, which a caller's own mapped uid never is; were it so, the kernel
        // would still refuse them our user namespace.)
        let ours = socket::getsockopt(&conn, sockopt::PeerCredentials).is_ok_and(|c| c.uid() == me);
        if ours && answer(conn.as_fd(), ns, fingerprint) == Ok(true) {
            joined += 1;
        }
    }
    0
}

/// Reads the joiner's fingerprint and sends it the namespaces when it matches ours (`true`),
/// else says that its container differs.
fn answer(conn: BorrowedFd, ns: &Namespaces, fingerprint: [u8; 32]) -> nix::Result<bool> {
    let timeout = nix::sys::time::TimeVal::new(REQUEST_TIMEOUT.as_secs() as _, 0);
    socket::setsockopt(&conn, sockopt::ReceiveTimeout, &timeout)?;
    let mut theirs = [0u8; 32];
    let got = socket::recv(conn.as_raw_fd(), &mut theirs, MsgFlags::MSG_WAITALL)?;
    let same = got == theirs.len() && theirs == fingerprint && ns.root.is_some();
    let mut reply = [0u8; REPLY_LEN];
    reply[..32].copy_from_slice(&fingerprint);
    reply[32] = match (same, &ns.user) {
        (false, _) => DIFFERS,
        (true, Some(_)) => WITH_USER,
        (true, None) => WITHOUT_USER,
    };
    let mut fds = Vec::with_capacity(3);
    if same {
        fds.extend(ns.user.as_ref().map(|u| u.as_raw_fd()));
        fds.push(ns.mount.as_raw_fd());
        fds.extend(ns.root.as_ref().map(|r| r.as_raw_fd()));
    }
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsg: &[ControlMessage] = if same { &rights } else { &[] };
    socket::sendmsg::<()>(conn.as_raw_fd(), &[IoSlice::new(&reply)], cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(same)
}
