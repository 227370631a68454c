//! Passing an open file descriptor to another process over a Unix socket (`SCM_RIGHTS`): how a
//! kernel hands its stderr to the spare engine it takes over (`spare`). One byte of data
//! carries the descriptor, as the kernel's socket API requires at least one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Sends a duplicate of `fd`; the receiver owns its copy, ours stays open.
pub fn send_fd(socket: &UnixStream, fd: RawFd) -> std::io::Result<()> {
    with_message(|message| {
        // SAFETY: the header and its control buffer were sized for one descriptor by
        // `with_message` and live across the call.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header) as *mut RawFd, fd);
            if libc::sendmsg(socket.as_raw_fd(), message, 0) != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })
}

/// Receives one descriptor (close-on-exec), or says that none came.
pub fn recv_fd(socket: &UnixStream) -> std::io::Result<OwnedFd> {
    with_message(|message| {
        let none = || std::io::Error::other("no descriptor came with the message");
        // SAFETY: as in send_fd; a descriptor read out of the control data is ours to own.
        unsafe {
            if libc::recvmsg(socket.as_raw_fd(), message, libc::MSG_CMSG_CLOEXEC) != 1 {
                return Err(none());
            }
            let header = libc::CMSG_FIRSTHDR(message);
            if header.is_null() || (*header).cmsg_level != libc::SOL_SOCKET || (*header).cmsg_type != libc::SCM_RIGHTS {
                return Err(none());
            }
            Ok(OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(header) as *const RawFd)))
        }
    })
}

/// Runs `f` with a message header for one byte of data and one descriptor of control data.
fn with_message<T>(f: impl FnOnce(&mut libc::msghdr) -> T) -> T {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = space as _;
    f(&mut message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};

    #[test]
    fn a_descriptor_passes_over_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut read_end, write_end) = std::io::pipe().unwrap();
        send_fd(&a, write_end.as_raw_fd()).unwrap();
        drop(write_end);
        let received = recv_fd(&b).unwrap();
        let mut file = File::from(received);
        file.write_all(b"through the socket").unwrap();
        drop(file);
        let mut text = String::new();
        read_end.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the socket");
    }


    #[test]
    fn a_message_without_a_descriptor_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"x").unwrap();
        assert!(recv_fd(&b).is_err());
    }
}
