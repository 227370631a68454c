// The NCCL backend of the shim: ProcessGroupNCCL over the same TCPStore as Gloo's. Compiled
// only when build.rs runs with TORCHBOOK_NCCL=1 (`make gpu`, `make gpu-kit`), against a
// libtorch with CUDA (libtorch_cuda.so) and NCCL's and CUDA's headers; the collectives
// themselves are the shared ones in c10d_shim.cpp (virtual on c10d::Backend).
#include "c10d_common.h"

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <c10/cuda/CUDAFunctions.h>

extern "C" {

// Joins the store and forms an NCCL group of `world` ranks bound to CUDA device `device`
// (this rank's local rank), connecting its communicator eagerly so a failure shows here and
// the first collective pays no set-up. Collectives wait up to timeout_ms (blocking wait).
tb_c10d_group* tb_c10d_init_nccl(const char* host, int port, int rank, int world, long long timeout_ms,
                                 int is_server, int device, char** error) {
  tb_c10d_group* result = nullptr;
  tb_c10d::guarded(error, [&] {
    auto count = c10::cuda::device_count();
    if (count == 0) {
      throw std::runtime_error("NCCL needs a CUDA device and this process sees none");
    }
    if (device < 0 || device >= count) {
      throw std::runtime_error("CUDA device " + std::to_string(device) + " for NCCL: this process sees " +
                               std::to_string(count) + " (0 to " + std::to_string(count - 1) + ")");
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto timeout = std::chrono::milliseconds(timeout_ms);
    auto store = tb_c10d::make_store(host, port, world, timeout, is_server);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
    at::Device cuda(at::kCUDA, static_cast<c10::DeviceIndex>(device));
    group->setBoundDeviceId(cuda);
    group->eagerConnectSingleDevice(cuda);
    result = new tb_c10d_group{store, group};
  });
  return result;
}

}  // extern "C"
