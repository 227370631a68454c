// What c10d_shim.cpp (TCPStore, Gloo, the collectives) and c10d_nccl.cpp (ProcessGroupNCCL,
// compiled only in the NCCL build) share: the group handle, the store, and the guard that
// turns every C++ exception into a malloc'd message for Rust.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

// One rank's membership: the store it joined and the backend (Gloo or NCCL) formed over it.
struct tb_c10d_group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::Backend> group;
};

namespace tb_c10d {

inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`; on an exception stores its message in *error and returns false.
template <typename F>
bool guarded(char** error, F&& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    *error = copy_message(e.what());
  } catch (...) {
    *error = copy_message("unknown C++ exception in c10d");
  }
  return false;
}

// Joins (is_server: hosts) the TCPStore at host:port, every wait bounded by `timeout`.
inline c10::intrusive_ptr<c10d::TCPStore> make_store(const char* host, int port, int world,
                                                     std::chrono::milliseconds timeout, int is_server) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(port);
  options.isServer = is_server != 0;
  options.numWorkers = world;
  options.waitWorkers = false;
  options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
}

}  // namespace tb_c10d
