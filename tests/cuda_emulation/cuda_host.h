// Runs CUDA kernels on the CPU, for tests on machines without a GPU.
//
// Prepended (g++ -include) to a .cu file, it turns the kernels into ordinary C++ functions;
// emu_launch() then runs a grid block by block, each block as blockDim real threads, with
// __syncthreads() a barrier among them. __shared__ variables are function statics, shared by
// the threads of the one block that runs at a time. Blocks run one after another in grid order,
// so a block never waits on another (as on a GPU, where nothing orders them), and a kernel that
// sums across blocks through a counter sees the last arriving block last, as it may on a GPU.
//
// Covered: threadIdx/blockIdx/blockDim/gridDim, __syncthreads, __threadfence, atomicAdd,
// __ldcg and the float/double math of CUDA's headers. Not covered: warp intrinsics, tensor
// cores, texture or constant memory; the fused step uses none of them.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct xpnet_emu_index { unsigned x = 0, y = 0, z = 0; };

inline thread_local xpnet_emu_index threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* xpnet_emu_barrier = nullptr;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)

inline void __syncthreads() { xpnet_emu_barrier->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T> inline T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
template <typename T> inline T __ldcg(const T* address) { return *address; }

using std::exp; using std::fabs; using std::isfinite; using std::log; using std::log1p; using std::max;
using std::min; using std::pow; using std::sqrt; using std::tanh;

// Run `body` (one kernel call) on every thread of every block of the grid.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(threads);
                xpnet_emu_barrier = &barrier;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t] {
                        blockIdx = {bx, by, bz};
                        threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                        body();
                        barrier.arrive_and_drop();  // a thread that has returned waits for no one
                    });
                for (auto& thread : pool) thread.join();
            }
}

// Calls kernel(*args[0], *args[1], ...) with the parameter types of the kernel: args is the
// array of pointers to arguments that cudaLaunchKernel takes.
template <typename... P, std::size_t... I>
inline void emu_call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

template <typename... P>
inline void emu_launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, void** args) {
    emu_launch(grid, block, [&] { emu_call(kernel, args, std::index_sequence_for<P...>{}); });
}
