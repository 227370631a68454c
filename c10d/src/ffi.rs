//! The C API of csrc/c10d_shim.cpp (and csrc/c10d_nccl.cpp in the NCCL build). Every function that can fail returns NULL or -1 and sets
//! `*error` to a malloc'd message, freed with `tb_c10d_free_error`.

use std::os::raw::{c_char, c_int, c_longlong};
use torch_sys::C_tensor;

#[repr(C)]
pub struct Group {
    _private: [u8; 0],
}

extern "C" {
    pub fn tb_c10d_free_error(error: *mut c_char);
    pub fn tb_c10d_init_gloo(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        is_server: c_int,
        interface_host: *const c_char,
        error: *mut *mut c_char,
    ) -> *mut Group;
    pub fn tb_c10d_all_reduce(group: *mut Group, tensors: *const *mut C_tensor, count: usize, op: c_int, error: *mut *mut c_char) -> c_int;
    pub fn tb_c10d_broadcast(group: *mut Group, tensors: *const *mut C_tensor, count: usize, root: c_int, error: *mut *mut c_char) -> c_int;
    pub fn tb_c10d_barrier(group: *mut Group, error: *mut *mut c_char) -> c_int;
    pub fn tb_c10d_destroy(group: *mut Group);
}

#[cfg(torchbook_nccl)]
extern "C" {
    pub fn tb_c10d_init_nccl(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        is_server: c_int,
        device: c_int,
        error: *mut *mut c_char,
    ) -> *mut Group;
}
