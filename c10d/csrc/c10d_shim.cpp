// A small C API over libtorch's own c10d (TCPStore + ProcessGroupGloo; ProcessGroupNCCL in
// c10d_nccl.cpp when built with it) for the Rust side
// (src/ffi.rs). Every entry point catches C++ exceptions and hands their message back as a
// malloc'd string, which Rust frees with tb_c10d_free_error: an exception must never cross
// into Rust. Tensors arrive as tch's `at::Tensor*` handles (torch-sys's C_tensor).
#include "c10d_common.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <vector>

namespace {

using tb_c10d::copy_message;
using tb_c10d::guarded;

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 0: return c10d::ReduceOp::SUM;
    case 1: return c10d::ReduceOp::MAX;
    case 2: return c10d::ReduceOp::MIN;
    // NCCL's own average (floating tensors); Gloo has none: the Rust side sums and divides.
    case 3: return c10d::ReduceOp::AVG;
    default: throw std::invalid_argument("reduce op " + std::to_string(op) + ": expected 0 (sum), 1 (max), 2 (min) or 3 (avg)");
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
    auto store = tb_c10d::make_store(host, port, world, timeout, is_server);
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
  // NCCL's orderly teardown (destroy_process_group's); Gloo's is a no-op.
  guarded(&ignored, [&] { g->group->shutdown(); });
  std::free(ignored);
  ignored = nullptr;
  guarded(&ignored, [&] { delete g; });
  std::free(ignored);
}

}  // extern "C"
