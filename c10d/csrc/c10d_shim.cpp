// A small C API over libtorch's own c10d (TCPStore + ProcessGroupGloo) for the Rust side
// (src/ffi.rs). Every entry point catches C++ exceptions and hands their message back as a
// malloc'd string, which Rust frees with tb_c10d_free_error: an exception must never cross
// into Rust. Tensors arrive as tch's `at::Tensor*` handles (torch-sys's C_tensor).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

char* copy_message(const std::string& message) {
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

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    // Gloo has no AVG: the Rust side sums and divides.
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::MAX;
    case 2: return c10d::ReduceOp::MIN;
    default: throw std::invalid_argument("reduce op " + std::to_string(op) + ": expected 0 (sum), 1 (max) or 2 (min)");
  }
}

std::vector<at::Tensor> tensors_of(at::Tensor** tensors, size_t count) {
  std::vector<at::Tensor> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

}  // namespace

struct tb_c10d_group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

extern "C" {

void tb_c10d_free_error(char* error) { std::free(error); }

// Joins (rank 0: hosts) the TCPStore at host:port and builds a Gloo group of `world` ranks
// over it, every wait bounded by timeout_ms. `interface_host` is the address Gloo binds
// (this machine's address the others reach). NULL on failure, with *error set.
tb_c10d_group* tb_c10d_init_gloo(const char* host, int port, int rank, int world, long long timeout_ms,
                                 int is_server, const char* interface_host, char** error) {
  tb_c10d_group* result = nullptr;
  guarded(error, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(port);
    options.isServer = is_server != 0;
    options.numWorkers = world;
    options.waitWorkers = false;
    options.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    group_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(interface_host)));
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, group_options);
    result = new tb_c10d_group{store, group};
  });
  return result;
}

int tb_c10d_all_reduce(tb_c10d_group* g, at::Tensor** tensors, size_t count, int op, char** error) {
  return guarded(error, [&] {
    auto list = tensors_of(tensors, count);
    c10d::AllreduceOptions options;
    options.reduceOp = reduce_op(op);
    g->group->allreduce(list, options)->wait();
  }) ? 0 : -1;
}

int tb_c10d_broadcast(tb_c10d_group* g, at::Tensor** tensors, size_t count, int root, char** error) {
  return guarded(error, [&] {
    auto list = tensors_of(tensors, count);
    c10d::BroadcastOptions options;
    options.rootRank = root;
    g->group->broadcast(list, options)->wait();
  }) ? 0 : -1;
}

int tb_c10d_barrier(tb_c10d_group* g, char** error) {
  return guarded(error, [&] { g->group->barrier()->wait(); }) ? 0 : -1;
}

void tb_c10d_destroy(tb_c10d_group* g) {
  char* ignored = nullptr;
  guarded(&ignored, [&] { delete g; });
  std::free(ignored);
}

}  // extern "C"
