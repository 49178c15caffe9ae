//! The window's listener: an address of its own on loopback, and only this OS user's
//! connections.
//!
//! - **Its own address.** Cookies ignore ports: a session cookie set by `127.0.0.1:PORT` is
//!   sent to every server on `127.0.0.1`, and any local page there could read it or set one
//!   of the same name. Without `--listen`, the window binds a random address of
//!   127.0.0.0/8 (Linux routes all of it to loopback), so its cookie jar is its own.
//! - **This user only.** Another local account can read the launch URL from
//!   `/proc/*/cmdline` and race the browser to it, or replay a cookie it stole. On Linux,
//!   every accepted connection is checked against `/proc/net/tcp` and `/proc/net/tcp6`: the
//!   peer's socket (local address = the accepted peer, remote = ours) must belong to this
//!   process's user; a connection whose socket is not found is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpStream};

/// How many random loopback addresses are tried before `127.0.0.1`.
const RANDOM_TRIES: usize = 8;

/// Binds the window: `listen` when given (it must be loopback; checked by the caller), else
/// a random `127.x.y.z:0`, else `127.0.0.1:0` (a system without the whole of 127/8).
pub async fn bind(listen: Option<SocketAddr>) -> std::io::Result<TcpListener> {
    if let Some(listen) = listen {
        return TcpListener::bind(listen).await;
    }
    for _ in 0..RANDOM_TRIES {
        if let Ok(listener) = TcpListener::bind((random_loopback(), 0)).await {
            return Ok(listener);
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await
}

/// `127.x.y.z` with random `x`, `y` and `z` (`z` neither 0 nor 255).
fn random_loopback() -> Ipv4Addr {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).expect("the system's random source");
    Ipv4Addr::new(127, bytes[0], bytes[1], 1 + bytes[2] % 254)
}

/// A listener that hands over only connections from this OS user's sockets.
pub struct OwnerOnly {
    inner: TcpListener,
    /// The user whose sockets may connect (this process's effective uid).
    uid: Option<u32>,
}

impl OwnerOnly {
    /// Accepts only this process's user. If that user cannot be told (no `/proc`), every
    /// connection is refused on Linux.
    pub fn new(inner: TcpListener) -> Self {
        Self {
            inner,
            uid: own_uid(),
        }
    }

    /// Accepts only the sockets of `uid` (tests: another user's connection).
    pub fn for_uid(inner: TcpListener, uid: u32) -> Self {
        Self {
            inner,
            uid: Some(uid),
        }
    }

    /// Whether the connection `peer` → `local` comes from a socket of our user.
    async fn allowed(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        if !cfg!(target_os = "linux") {
            return true;
        }
        let Some(uid) = self.uid else {
            return false;
        };
        let mut owner = None;
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = tokio::fs::read_to_string(table).await {
                owner = socket_owner(&text, peer, local);
                if owner.is_some() {
                    break;
                }
            }
        }
        owner == Some(uid)
    }
}

impl axum::serve::Listener for OwnerOnly {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = axum::serve::Listener::accept(&mut self.inner).await;
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            if self.allowed(peer, local).await {
                return (stream, peer);
            }
            // The address says nothing secret; the connection is dropped unanswered.
            tracing::warn!(%peer, "refused a connection from another user's socket (or one that could not be found)");
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// This process's effective uid, from `/proc/self/status` (`Uid: real effective saved fs`;
/// unlike the owner of `/proc/self`, right for a process that is not dumpable).
fn own_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The uid of the socket whose local address is `peer` and remote address `ours`, in the
/// text of `/proc/net/tcp` or `/proc/net/tcp6` (an IPv4-mapped IPv6 address counts as its
/// IPv4 address).
pub fn socket_owner(table: &str, peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    let (peer, ours) = (canonical(peer), canonical(ours));
    table
        .lines()
        .skip(1)
        .filter_map(parse_line)
        .find(|(local, remote, _)| *local == peer && *remote == ours)
        .map(|(_, _, uid)| uid)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// One line of `/proc/net/tcp{,6}`: its local address, remote address and uid.
/// `sl local rem st tx:rx tr:when retrnsmt uid …`; an address is `HEX:PORT`, the IP as the
/// kernel's 32-bit words printed in host byte order.
pub fn parse_line(line: &str) -> Option<(SocketAddr, SocketAddr, u32)> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_address(fields.next()?)?;
    let remote = parse_address(fields.next()?)?;
    let uid = fields.nth(4)?.parse().ok()?;
    Some((canonical(local), canonical(remote), uid))
}

fn parse_address(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if ip.len() % 8 != 0 || !ip.is_ascii() {
        return None;
    }
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words as a little-endian kernel prints them (the test machines' order).
    #[cfg(target_endian = "little")]
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4788 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0504037F:1F90 01 00000000:00000000 00:00000000 00000000  1001        0 4790 1 0000000000000000 20 4 30 10 -1
   2: 0504037F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4791 1 0000000000000000 20 4 30 10 -1
";

    #[cfg(target_endian = "little")]
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A2B0 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  1002        0 7274 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:93E0 0000000000000000FFFF00000504037F:1F90 01 00000000:00000000 00:00000000 00000000  1003        0 7275 1 0000000000000000 100 0 0 10 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn issue_12_proc_net_tcp_lines_are_read_for_ipv4_and_ipv6() {
        let (local, remote, uid) = parse_line(TCP.lines().nth(2).unwrap()).unwrap();
        assert_eq!(local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(remote, "127.3.4.5:8080".parse().unwrap());
        assert_eq!(uid, 1001);
        let ours: SocketAddr = "127.3.4.5:8080".parse().unwrap();
        // The peer's socket, not our end of the same connection (owned by us, 1000).
        assert_eq!(
            socket_owner(TCP, "127.0.0.1:40000".parse().unwrap(), ours),
            Some(1001)
        );
        assert_eq!(
            socket_owner(TCP, "127.0.0.1:40001".parse().unwrap(), ours),
            None,
            "no such socket: unknown"
        );
        // `::1` in tcp6.
        let v6 = parse_line(TCP6.lines().nth(1).unwrap()).unwrap();
        assert_eq!(v6.0, "[::1]:41648".parse().unwrap());
        assert_eq!(
            socket_owner(
                TCP6,
                "[::1]:41648".parse().unwrap(),
                "[::1]:8080".parse().unwrap()
            ),
            Some(1002)
        );
        // A dual-stack client's socket lists IPv4-mapped addresses.
        assert_eq!(
            socket_owner(TCP6, "127.0.0.1:37856".parse().unwrap(), ours),
            Some(1003)
        );
        for bad in [
            "",
            "   0: zz:1F90 00000000:0000 0A 0:0 0:0 0 1000",
            "   0: 0100007F",
        ] {
            assert!(parse_line(bad).is_none(), "{bad}");
        }
    }

    async fn connect_and_accept(listener: OwnerOnly) -> Option<TcpStream> {
        use axum::serve::Listener;
        let address = listener.local_addr().unwrap();
        let mut listener = listener;
        let client = TcpStream::connect(address).await.unwrap();
        let accepted = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            Listener::accept(&mut listener),
        )
        .await
        .ok()
        .map(|(stream, _)| stream);
        drop(client);
        accepted
    }

    #[tokio::test]
    async fn issue_12_the_same_user_connects_and_another_user_is_refused() {
        let ours = OwnerOnly::new(bind(None).await.unwrap());
        assert!(ours.uid.is_some(), "this process's uid");
        assert!(connect_and_accept(ours).await.is_some());
        if cfg!(target_os = "linux") {
            let uid = own_uid().unwrap();
            let theirs = OwnerOnly::for_uid(bind(None).await.unwrap(), uid.wrapping_add(1));
            assert!(
                connect_and_accept(theirs).await.is_none(),
                "a socket of another uid is dropped"
            );
        }
    }

    #[tokio::test]
    async fn issue_12_the_window_binds_an_address_of_its_own_in_127_8() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let listener = bind(None).await.unwrap();
            let ip = listener.local_addr().unwrap().ip();
            assert!(ip.is_loopback(), "{ip}");
            seen.insert(ip);
        }
        if cfg!(target_os = "linux") {
            assert!(seen.len() > 1, "random addresses: {seen:?}");
            assert!(!seen.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        let given: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listener = bind(Some(given)).await.unwrap();
        assert_eq!(listener.local_addr().unwrap().ip(), given.ip());
        for _ in 0..1000 {
            let ip = random_loopback().octets();
            assert!(ip[0] == 127 && ip[3] != 0 && ip[3] != 255, "{ip:?}");
        }
    }
}
