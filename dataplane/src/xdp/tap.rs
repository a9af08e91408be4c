//! The kernel TAP device through which the engine's `PassToKernel` frames
//! enter the kernel's stack.

use super::XdpError;

/// One queue of the TAP device through which frames the engine gives to
/// the kernel (`PassToKernel`: traffic for the box's own address that
/// arrived on a NAT port or as ICMP, e.g. a ping of a masquerade address)
/// enter the kernel's stack, as if received there. A syscall per frame:
/// these are exceptions, never the forwarding path.
pub struct KernelTap {
    file: std::fs::File,
    mac: [u8; 6],
}

impl KernelTap {
    /// Opens a queue of multi-queue TAP device `name` (created by the first
    /// open, gone with the last). Frames are written with destination `mac`
    /// (give the device that address).
    pub fn open(name: &str, mac: [u8; 6]) -> Result<Self, XdpError> {
        use std::os::fd::AsRawFd;
        let fail = |errno: i32| XdpError::Socket { call: "TUNSETIFF", iface: name.to_string(), queue: 0, errno };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| fail(e.raw_os_error().unwrap_or(libc::EIO)))?;
        // SAFETY: ifreq is a plain C struct of integers and arrays, for
        // which all-zero bytes are a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        if name.len() >= ifr.ifr_name.len() {
            return Err(fail(libc::ENAMETOOLONG));
        }
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr`
        // is, valid for the call; the fd is open /dev/net/tun.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut libc::ifreq) };
        if rc != 0 {
            return Err(fail(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)));
        }
        Ok(Self { file, mac })
    }

    /// Hands a frame to the kernel, addressed to the device. False if the
    /// kernel refused it.
    pub fn write(&mut self, frame: &mut [u8]) -> bool {
        use std::io::Write;
        if let Some(dst) = frame.get_mut(..6) {
            dst.copy_from_slice(&self.mac);
        }
        self.file.write(frame).is_ok_and(|n| n == frame.len())
    }
}
