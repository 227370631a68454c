//! Connection files (`protocol::connection`): `ConnectionInfo::parse` on any text, as the kernel
//! reads the file a frontend wrote.
//!
//! Checks, beyond "never panics": an accepted file has transport `tcp` or `ipc` and the scheme
//! `hmac-sha256`; every channel's endpoint is `tcp://ip:port` or `ipc://ip-port` with that
//! channel's port; a non-empty key, or ipc, is never refused by `refuse_unsigned_network`, and
//! a refusal names the address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torchbook_kernel::protocol::connection::{Channel, ConnectionInfo};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = match ConnectionInfo::parse(&text, "fuzz.json") {
        Ok(info) => info,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(info.transport == "tcp" || info.transport == "ipc", "{:?}", info.transport);
    assert_eq!(info.signature_scheme, "hmac-sha256");
    for (channel, port) in [
        (Channel::Shell, info.shell_port),
        (Channel::Control, info.control_port),
        (Channel::Stdin, info.stdin_port),
        (Channel::Iopub, info.iopub_port),
        (Channel::Heartbeat, info.hb_port),
    ] {
        let endpoint = info.endpoint(channel);
        let expected = match info.transport.as_str() {
            "ipc" => format!("ipc://{}-{port}", info.ip),
            _ => format!("tcp://{}:{port}", info.ip),
        };
        assert_eq!(endpoint, expected);
    }
    match info.refuse_unsigned_network() {
        Ok(()) => {}
        Err(e) => {
            assert!(info.key.is_empty() && info.transport == "tcp", "refused {info:?}");
            assert!(e.to_string().contains(&info.ip));
        }
    }
});
