// Runs CUDA kernels on the CPU, for tests on machines without a GPU.
//
// Prepended (g++ -include) to a .cu file, it turns the kernels into ordinary C++ functions;
// emu_launch() then runs a grid block by block, each block as blockDim real threads, with
// __syncthreads() a barrier among them. __shared__ variables are function statics, shared by
// the threads of the one block that runs at a time. Blocks run one after another in grid order,
// so a block never waits on another (as on a GPU, where nothing orders them), and a kernel that
// sums across blocks through a counter sees the last arriving block last, as it may on a GPU.
//
// emu_launch_concurrent() runs every block of the grid at once instead (grid x block threads), for
// a kernel whose blocks wait on each other (the persistent step's grid barrier). Its shared memory
// must be declared with XPNET_BLOCK_SHARED, which gives each block its own; a function-static
// __shared__ would be one for all blocks there.
//
// Covered: threadIdx/blockIdx/blockDim/gridDim, __syncthreads, __threadfence, atomicAdd,
// atomicExch, __ldcg, __trap, __longlong_as_double, the float/double math of CUDA's headers,
// and the tensor cores as fused_step.cu's xpnet_wmma uses them for TF32 and bfloat16 (see
// below). Not covered: other warp intrinsics, texture or constant memory; the fused step uses
// none of them. Caches are: loads see every store at once, so the coherence of a GPU's L1 within
// a launch (persistent_step.cu's xpnet_load<true>) cannot be checked here.
#pragma once
#define XPNET_CUDA_EMULATION 1
#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
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
inline thread_local std::barrier<>* xpnet_emu_barrier = nullptr;  // the running block's __syncthreads
inline thread_local unsigned char* xpnet_emu_shared = nullptr;    // the running block's XPNET_BLOCK_SHARED
constexpr std::size_t XPNET_EMU_SHARED_BYTES = 48 * 1024;           // as a GPU's static shared memory

// A block's own shared memory (as on a GPU, not initialised: what an earlier block left may be there).
template <typename T>
inline T& xpnet_emu_block_shared() {
    static_assert(sizeof(T) <= XPNET_EMU_SHARED_BYTES, "more shared memory than a block has");
    return *reinterpret_cast<T*>(xpnet_emu_shared);
}
#define XPNET_BLOCK_SHARED(TYPE, NAME) TYPE& NAME = xpnet_emu_block_shared<TYPE>()

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

inline void __syncthreads() { xpnet_emu_barrier->arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T> inline T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
template <typename T> inline T atomicExch(T* address, T value) { return std::atomic_ref<T>(*address).exchange(value); }
template <typename T> inline T __ldcg(const T* address) { return *address; }
[[noreturn]] inline void __trap() { std::abort(); }
inline double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
// A load of a value another block changes while this one waits for it (a spin): atomic, and
// yielding, since the blocks share the CPU's cores.
inline int xpnet_emu_spin_load(int* address) {
    std::this_thread::yield();
    return std::atomic_ref<int>(*address).load();
}

using std::exp; using std::fabs; using std::isfinite; using std::log; using std::log1p; using std::max;
using std::min; using std::pow; using std::sqrt; using std::tanh;

// -- tensor cores ------------------------------------------------------------------------------
// fused_step.cu's xpnet_wmma<PREC>, which on a GPU is inline PTX (wmma.load / wmma.mma /
// wmma.store and the cvt roundings). A fragment's layout across a warp's lanes is unspecified
// in PTX, and code that only loads, multiplies and stores fragments cannot see it; here every
// lane holds the whole fragment, computes the whole product, and lane 0 stores it.
struct xpnet_bf16 {  // a bfloat16 as stored
    std::uint16_t bits = 0;
    operator float() const { return std::bit_cast<float>(std::uint32_t(bits) << 16); }
};

inline unsigned xpnet_emu_lane() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32; }

// PREC as fused_step.cu numbers it (which checks): 1 TF32 (m16n16k8), 2 bfloat16 (m16n16k16).
template <int PREC>
struct xpnet_wmma {
    static_assert(PREC == 1 || PREC == 2, "a tensor-core precision");
    static constexpr bool tf32 = PREC == 1;
    static constexpr int K = tf32 ? 8 : 16;
    using staged = std::conditional_t<tf32, float, xpnet_bf16>;
    struct in { float v[16][16]; };  // A: v[i][k], B: v[k][j] (k < K); TF32 and bfloat16 values as floats
    struct acc { float v[16][16]; };

    static staged round(const float f) {
        const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
        if constexpr (tf32) {  // cvt.rna.tf32.f32: 10 mantissa bits, round to nearest, ties away from zero
            if (!std::isfinite(f)) return f;
            return std::bit_cast<float>((u + 0x1000u) & 0xffffe000u);
        } else {  // cvt.rn.bf16.f32: 7 mantissa bits, round to nearest, ties to even
            if (std::isnan(f)) return {std::uint16_t((u >> 16) | 0x40)};  // stays a NaN
            return {std::uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
        }
    }
    // the tensor cores read a float's top 19 bits as TF32: unrounded inputs are truncated
    static float read(const staged x) {
        if constexpr (tf32) return std::bit_cast<float>(std::bit_cast<std::uint32_t>(x) & 0xffffe000u);
        else return float(x);
    }
    static void zero(acc& c) {
        for (auto& row : c.v)
            for (auto& x : row) x = 0.0f;
    }
    static void load_a(in& f, const staged* p, const int ldm) {  // column-major: (i, k) at p[k * ldm + i]
        for (int i = 0; i < 16; ++i)
            for (int k = 0; k < K; ++k) f.v[i][k] = read(p[k * ldm + i]);
    }
    static void load_b(in& f, const staged* p, const int ldm) {  // row-major: (k, j) at p[k * ldm + j]
        for (int k = 0; k < K; ++k)
            for (int j = 0; j < 16; ++j) f.v[k][j] = read(p[k * ldm + j]);
    }
    static void mma(acc& d, const in& a, const in& b) {  // d += a @ b, summed in float
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) {
                float s = d.v[i][j];
                for (int k = 0; k < K; ++k) s += a.v[i][k] * b.v[k][j];
                d.v[i][j] = s;
            }
    }
    static void store(float* p, const acc& c, const int ldm) {  // row-major: (i, j) to p[i * ldm + j]
        if (xpnet_emu_lane() != 0) return;  // one copy of the warp's result
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) p[i * ldm + j] = c.v[i][j];
    }
};

// The threads of block (bx, by, bz), started; each sets the block's barrier and shared memory.
inline void xpnet_emu_start_block(std::vector<std::thread>& pool, unsigned bx, unsigned by, unsigned bz, dim3 block,
                                  std::barrier<>* barrier, unsigned char* shared, const std::function<void()>& body) {
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([=, &body] {
            blockIdx = {bx, by, bz};
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            xpnet_emu_barrier = barrier;
            xpnet_emu_shared = shared;
            body();
            barrier->arrive_and_drop();  // a thread that has returned waits for no one
        });
}

struct alignas(64) xpnet_emu_arena {  // a block's shared memory
    unsigned char bytes[XPNET_EMU_SHARED_BYTES];
};

inline std::unique_ptr<xpnet_emu_arena> xpnet_emu_new_shared() { return std::make_unique<xpnet_emu_arena>(); }

// Run `body` (one kernel call) on every thread of every block of the grid, a block at a time.
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& body) {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z;
    const auto shared = xpnet_emu_new_shared();  // one block runs at a time: its shared memory is the next one's
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(threads);
                std::vector<std::thread> pool;
                pool.reserve(threads);
                xpnet_emu_start_block(pool, bx, by, bz, block, &barrier, shared->bytes, body);
                for (auto& thread : pool) thread.join();
            }
}

// Run `body` on every thread of every block of the grid, all blocks at once, each with its own
// barrier and shared memory (XPNET_BLOCK_SHARED).
inline void emu_launch_concurrent(dim3 grid, dim3 block, const std::function<void()>& body) {
    gridDim = grid;
    blockDim = block;
    const unsigned threads = block.x * block.y * block.z, blocks = grid.x * grid.y * grid.z;
    std::vector<std::unique_ptr<std::barrier<>>> barriers;
    std::vector<std::unique_ptr<xpnet_emu_arena>> shared;
    std::vector<std::thread> pool;
    pool.reserve(std::size_t(threads) * blocks);
    for (unsigned b = 0; b < blocks; ++b) {
        barriers.push_back(std::make_unique<std::barrier<>>(threads));
        shared.push_back(xpnet_emu_new_shared());
    }
    for (unsigned b = 0; b < blocks; ++b)
        xpnet_emu_start_block(pool, b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y), block, barriers[b].get(),
                              shared[b]->bytes, body);
    for (auto& thread : pool) thread.join();
}

// Calls kernel(*args[0], *args[1], ...) with the parameter types of the kernel: args is the
// array of pointers to arguments that cudaLaunchKernel takes.
template <typename... P, std::size_t... I>
inline void emu_call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

// A parameter type as one letter: i int, l long long, f float, d double, b bool; upper case for a
// pointer to one (const or not); ? for anything else.
template <typename P>
constexpr char emu_type_code() {
    using Q = std::remove_cv_t<std::remove_reference_t<P>>;
    if constexpr (std::is_pointer_v<Q>) {
        const char c = emu_type_code<std::remove_pointer_t<Q>>();
        return c >= 'a' && c <= 'z' ? char(c - 'a' + 'A') : '?';
    } else if constexpr (std::is_same_v<Q, int>) return 'i';
    else if constexpr (std::is_same_v<Q, long long>) return 'l';
    else if constexpr (std::is_same_v<Q, float>) return 'f';
    else if constexpr (std::is_same_v<Q, double>) return 'd';
    else if constexpr (std::is_same_v<Q, bool>) return 'b';
    else return '?';
}

// The kernel's parameter types, one letter each: what a launch's arguments must match exactly, as
// on a GPU, where CuPy packs each scalar at its own size and a wrong one shifts the rest.
template <typename... P>
inline const char* emu_signature(void (*)(P...)) {
    static const char codes[] = {emu_type_code<P>()..., '\0'};
    return codes;
}

template <typename... P>
inline void emu_launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, void** args, bool concurrent) {
    const auto body = [&] { emu_call(kernel, args, std::index_sequence_for<P...>{}); };
    if (concurrent) emu_launch_concurrent(grid, block, body);
    else emu_launch(grid, block, body);
}
