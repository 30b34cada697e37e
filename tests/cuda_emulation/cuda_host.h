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
// __ldcg, the float/double math of CUDA's headers, and the tensor cores as mma.h's
// nvcuda::wmma offers them for TF32 and bfloat16 (see below). Not covered: other warp
// intrinsics, texture or constant memory; the fused step uses none of them.
#pragma once
#define XPNET_CUDA_EMULATION 1
#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <type_traits>
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
#define __align__(n) __attribute__((aligned(n)))

inline void __syncthreads() { xpnet_emu_barrier->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T> inline T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
template <typename T> inline T __ldcg(const T* address) { return *address; }

using std::exp; using std::fabs; using std::isfinite; using std::log; using std::log1p; using std::max;
using std::min; using std::pow; using std::sqrt; using std::tanh;

// -- tensor cores ------------------------------------------------------------------------------
// bfloat16 as cuda_bf16.h converts it: float to bfloat16 rounds to nearest, ties to even.
struct __nv_bfloat16 {
    std::uint16_t bits = 0;
    operator float() const { return std::bit_cast<float>(std::uint32_t(bits) << 16); }
};
inline __nv_bfloat16 __float2bfloat16(const float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if (std::isnan(f)) return {std::uint16_t((u >> 16) | 0x40)};  // stays a NaN
    return {std::uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

// nvcuda::wmma for the shapes the fused product uses. A fragment's layout across a warp's lanes
// is unspecified in CUDA, and code that uses only load/mma/store cannot see it; here every lane
// holds the whole fragment, computes the whole product, and lane 0 stores it.
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };

// float to TF32 (cvt.rna.tf32.f32): 10 mantissa bits, round to nearest, ties away from zero.
inline float __float_to_tf32(const float f) {
    if (!std::isfinite(f)) return f;
    return std::bit_cast<float>((std::bit_cast<std::uint32_t>(f) + 0x1000u) & 0xffffe000u);
}

template <typename Use, int M, int N, int K> struct fragment_shape;
template <int M, int N, int K> struct fragment_shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct fragment_shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct fragment_shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int rows = fragment_shape<Use, M, N, K>::rows, cols = fragment_shape<Use, M, N, K>::cols;
    float v[rows][cols];  // TF32 and bfloat16 values are floats here
};

inline unsigned lane_id() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32; }

template <typename Use, int M, int N, int K, typename T, typename Layout, typename E>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const E* p, const unsigned ldm) {
    static_assert(!std::is_same_v<T, precision::tf32> || std::is_same_v<E, float>, "TF32 loads from float");
    static_assert(!std::is_same_v<T, __nv_bfloat16> || std::is_same_v<E, __nv_bfloat16>, "bf16 loads from bf16");
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c) {
            float x = float(std::is_same_v<Layout, col_major> ? p[c * ldm + r] : p[r * ldm + c]);
            // the tensor cores read a float's top 19 bits as TF32: unrounded inputs are truncated
            if constexpr (std::is_same_v<T, precision::tf32>)
                x = std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & 0xffffe000u);
            f.v[r][c] = x;
        }
}

template <int M, int N, int K>
inline void fill_fragment(fragment<accumulator, M, N, K, float>& f, const float value) {
    for (auto& row : f.v)
        for (auto& x : row) x = value;
}

template <int M, int N, int K, typename T, typename LA, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
    float out[M][N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = c.v[i][j];  // float accumulation
            for (int k = 0; k < K; ++k) s += a.v[i][k] * b.v[k][j];
            out[i][j] = s;
        }
    std::copy(&out[0][0], &out[0][0] + M * N, &d.v[0][0]);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, const unsigned ldm,
                              const layout_t layout) {
    if (lane_id() != 0) return;  // one copy of the warp's result
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) p[layout == mem_row_major ? r * ldm + c : c * ldm + r] = f.v[r][c];
}
}  // namespace nvcuda::wmma

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
