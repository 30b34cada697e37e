// The captured training step as 3L + 2 kernels for L Dense layers (11 for 784-256-128-10),
// launched in the order cuda_step.py plans them:
//
//   gather the batch (training_step.cu)                                   1
//   per layer: h = act([h_in, 1] @ [W; b])            xpnet_fused_gemm    L
//   loss value, gradient, correct rows                xpnet_loss_grad     1
//   per layer, last to first:
//     [gW; gb] = [h_in^T; 1^T] @ d  (+ l2/N * W)     xpnet_fused_gemm    L
//     d_in = (d @ W^T) * act'(h_in)                   xpnet_fused_gemm    L - 1
//   optimizer update, L2 penalty, epoch statistics    xpnet_update_step   1
//
// What the generic step runs as separate kernels becomes part of a product:
// - the bias add is one more k of the forward product: a column of ones after op(A)
//   and the bias as the row after op(B);
// - the bias gradient is one more row of the weight-gradient product: a row of ones
//   under op(A) whose output row is the bias gradient;
// - the activation (forward), its backward (d * act'(y)) and the L2 gradient are the
//   product's epilogue, applied as each value is stored;
// - split-K partial products are summed by the last block of each output tile to
//   finish (a counter per tile), in split order, so the result does not depend on
//   which block finishes last and no second kernel is needed.
//
// Activation codes (as kernels/numba_step.py): 0 none, 1 sigmoid, 2 tanh, 3 ReLU.
// Loss codes: 0 softmax cross-entropy, 1 binary cross-entropy, 2 squared error.
// Compiled after training_step.cu (xpnet_gather_batch, xpnet_record_step), in one module.
// The arithmetic is the reference path's (Sequential._loss_and_backward, Optimizer.step),
// term for term; sums run in another order.

#define XPNET_EPI_NONE 0      // C = acc
#define XPNET_EPI_ACT 1       // C = act(acc)
#define XPNET_EPI_ACT_GRAD 2  // C = acc * act'(y), y = aux[i, j] the activation's output
#define XPNET_EPI_L2 3        // C = acc + lam * aux[i, j] (the weights), bias row excluded
#define XPNET_BIAS_NONE 0
#define XPNET_BIAS_IN 1       // the bias joins the product (forward)
#define XPNET_BIAS_OUT 2      // the bias gradient comes out of it (backward)

// The products' precision (Sequential's matmul_precision), xpnet_fused_gemm's PREC:
#define XPNET_PREC_HIGHEST 0  // "highest": float or double products on the ordinary (SIMT) cores
#define XPNET_PREC_TF32 1     // "tf32": float inputs rounded to TF32 (10-bit mantissa), tensor cores
#define XPNET_PREC_BF16 2     // "bf16": float inputs rounded to bfloat16 (7-bit mantissa), tensor cores
// Both tensor-core precisions accumulate in float, and everything outside the products (epilogues,
// loss, update) stays float. The bias, one more k of the forward product, and the bias gradient,
// one more row of the weight-gradient product, go through the tensor cores with the rest. They are
// compiled only where XPNET_TENSOR_CORES is defined (a module of their own, compute capability
// 8.0 or newer), so the highest-precision kernels never contain a tensor-core instruction.

// At most this many values of k are staged in shared memory per round of a product (cuda_step's
// MAX_STAGED_K passes it; 16, 32 or 64)
#ifndef XPNET_MAX_BK
#define XPNET_MAX_BK 64
#endif

template <bool C, typename A, typename B> struct xpnet_pick { using type = A; };
template <typename A, typename B> struct xpnet_pick<false, A, B> { using type = B; };

#if defined(XPNET_TENSOR_CORES) && !defined(XPNET_CUDA_EMULATION)
// The tensor cores through PTX's warp-wide wmma instructions (PTX ISA 7.0, sm_80), written inline
// so that the module includes no CUDA header: NVRTC has no include path by default, and where CUDA
// comes from pip wheels, mma.h's crt/mma.h is missing. These are the instructions nvcc emits for
// mma.h's nvcuda::wmma on the same shapes. A fragment's layout across the warp's lanes is opaque:
// its registers are only loaded, multiplied and stored, never read element by element.
struct xpnet_bf16 { unsigned short bits; };  // a bfloat16 as stored (no initialiser: it lives in __shared__)

#define XPNET_WMMA_LOAD(MATRIX_LAYOUT_SHAPE_TYPE)                                                               \
    asm volatile("wmma.load." MATRIX_LAYOUT_SHAPE_TYPE " {%0, %1, %2, %3}, [%4], %5;"                          \
                 : "=r"(f.x[0]), "=r"(f.x[1]), "=r"(f.x[2]), "=r"(f.x[3]) : "l"(p), "r"(ldm) : "memory")
#define XPNET_WMMA_MMA(SHAPE_TYPES)                                                                             \
    asm volatile("wmma.mma.sync.aligned.col.row." SHAPE_TYPES                                                  \
                 " {%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, {%12, %13, %14, %15},"                \
                 " {%0, %1, %2, %3, %4, %5, %6, %7};"                                                          \
                 : "+f"(d.x[0]), "+f"(d.x[1]), "+f"(d.x[2]), "+f"(d.x[3]), "+f"(d.x[4]), "+f"(d.x[5]),       \
                   "+f"(d.x[6]), "+f"(d.x[7])                                                                  \
                 : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(b.x[0]), "r"(b.x[1]), "r"(b.x[2]), \
                   "r"(b.x[3]))
#define XPNET_WMMA_STORE(SHAPE)                                                                                 \
    asm volatile("wmma.store.d.sync.aligned.row." SHAPE ".f32 [%0], {%1, %2, %3, %4, %5, %6, %7, %8}, %9;"    \
                 : : "l"(p), "f"(c.x[0]), "f"(c.x[1]), "f"(c.x[2]), "f"(c.x[3]), "f"(c.x[4]), "f"(c.x[5]),   \
                   "f"(c.x[6]), "f"(c.x[7]), "r"(ldm) : "memory")

// One warp's 16 x 16 x K product at PREC: K = 8 for TF32 (m16n16k8), 16 for bfloat16 (m16n16k16).
// Pointers are 32-byte aligned; ldm (in elements) a multiple of 16 bytes' worth.
template <int PREC>
struct xpnet_wmma {
    static_assert(PREC == XPNET_PREC_TF32 || PREC == XPNET_PREC_BF16, "a tensor-core precision");
    static constexpr bool tf32 = PREC == XPNET_PREC_TF32;
    static constexpr int K = tf32 ? 8 : 16;
    using staged = typename xpnet_pick<tf32, float, xpnet_bf16>::type;  // what shared memory holds
    struct in { unsigned x[4]; };  // a warp's share of A (16 x K) or B (K x 16)
    struct acc { float x[8]; };    // a warp's share of the 16 x 16 float sums

    // TF32: 10 mantissa bits, round to nearest, ties away; bfloat16: 7, round to nearest even
    static __device__ __forceinline__ staged round(const float v) {
        if constexpr (tf32) {
            unsigned r;
            asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
            return __uint_as_float(r);
        } else {
            xpnet_bf16 r;
            asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(v));
            return r;
        }
    }
    static __device__ __forceinline__ void zero(acc& c) {
#pragma unroll
        for (int i = 0; i < 8; ++i) c.x[i] = 0.0f;
    }
    // A column-major (element (i, k) at p[k * ldm + i]), B row-major ((k, j) at p[k * ldm + j])
    static __device__ __forceinline__ void load_a(in& f, const staged* p, const int ldm) {
        if constexpr (tf32) XPNET_WMMA_LOAD("a.sync.aligned.col.m16n16k8.tf32");
        else XPNET_WMMA_LOAD("a.sync.aligned.col.m16n16k16.bf16");
    }
    static __device__ __forceinline__ void load_b(in& f, const staged* p, const int ldm) {
        if constexpr (tf32) XPNET_WMMA_LOAD("b.sync.aligned.row.m16n16k8.tf32");
        else XPNET_WMMA_LOAD("b.sync.aligned.row.m16n16k16.bf16");
    }
    static __device__ __forceinline__ void mma(acc& d, const in& a, const in& b) {  // d += a @ b
        if constexpr (tf32) XPNET_WMMA_MMA("m16n16k8.f32.tf32.tf32.f32");
        else XPNET_WMMA_MMA("m16n16k16.f32.bf16.bf16.f32");
    }
    // row-major: element (i, j) to p[i * ldm + j]
    static __device__ __forceinline__ void store(float* p, const acc& c, const int ldm) {
        if constexpr (tf32) XPNET_WMMA_STORE("m16n16k8");
        else XPNET_WMMA_STORE("m16n16k16");
    }
};
#undef XPNET_WMMA_LOAD
#undef XPNET_WMMA_MMA
#undef XPNET_WMMA_STORE
#endif
#if defined(XPNET_TENSOR_CORES) && defined(XPNET_CUDA_EMULATION)
// the emulation's xpnet_wmma (tests/cuda_emulation/cuda_host.h) numbers the precisions as here
static_assert(xpnet_wmma<XPNET_PREC_TF32>::K == 8 && xpnet_wmma<XPNET_PREC_BF16>::K == 16, "emulated PREC");
#endif

template <typename T>
__device__ __forceinline__ T xpnet_act(const T v, const int code) {
    if (code == 1) {  // stable: exp of a non-positive argument only
        const T e = exp(-fabs(v));
        return v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    if (code == 2) return tanh(v);
    if (code == 3) return v < T(0) ? T(0) : v;  // NaN stays NaN
    return v;
}

// d * act'(pre-activation), written with the activation's output y.
template <typename T>
__device__ __forceinline__ T xpnet_act_grad(const T d, const T y, const int code) {
    if (code == 1) return d * y * (T(1) - y);
    if (code == 2) return d * (T(1) - y * y);
    if (code == 3) return y > T(0) ? d : T(0);
    return d;
}

template <bool COHERENT, typename T>
__device__ __forceinline__ T xpnet_epilogue(const T acc, const int epi, const int code, const T* aux, const long long at,
                                            const T lam) {
    if (epi == XPNET_EPI_ACT) return xpnet_act(acc, code);
    if (epi == XPNET_EPI_ACT_GRAD) return xpnet_act_grad(acc, xpnet_load<COHERENT>(aux + at), code);
    if (epi == XPNET_EPI_L2) return acc + lam * xpnet_load<COHERENT>(aux + at);
    return acc;
}

// What a product stages in shared memory: its inputs, rounded for the tensor cores.
template <typename T, int PREC> struct xpnet_staged { using type = T; };

template <int PREC, typename S, typename T>
__device__ __forceinline__ S xpnet_stage(const T v) {
#ifdef XPNET_TENSOR_CORES
    if constexpr (PREC != XPNET_PREC_HIGHEST) return xpnet_wmma<PREC>::round(v);
    else
#endif
        return v;
}

// The tensor cores' share of one TILE x TILE output tile. PREC 0 has none (the SIMT path keeps its
// sums in registers); the others are defined with XPNET_TENSOR_CORES.
template <int TILE, int PREC> struct xpnet_tc_tile;
template <int TILE> struct xpnet_tc_tile<TILE, XPNET_PREC_HIGHEST> {};

#ifdef XPNET_TENSOR_CORES
// xpnet_wmma says what each precision stages; TF32's float is the primary template's (a mismatch
// would not compile: xpnet_tc_tile::add takes the staged arrays as xpnet_wmma's type)
template <> struct xpnet_staged<float, XPNET_PREC_BF16> { using type = xpnet_wmma<XPNET_PREC_BF16>::staged; };

// The block's 8 warps take the tile's 16 x 16 sub-tiles in turn (TILE 32: four sub-tiles, for warps
// 0 to 3; TILE 64: sixteen, two per warp), each summing its sub-tile in a float fragment over the
// staged k, W::K at a time.
template <int TILE, int PREC>
struct xpnet_tc_tile {
    using W = xpnet_wmma<PREC>;
    using S = typename W::staged;
    static constexpr int SUB = TILE / 16, PER_WARP = (SUB * SUB + 7) / 8;
    typename W::acc acc[PER_WARP];

    __device__ void zero() {
#pragma unroll
        for (int p = 0; p < PER_WARP; ++p) W::zero(acc[p]);
    }

    // acc += op(A) @ op(B) over the staged k: As[k][i] is op(A) column-major, Bs[k][j] op(B) row-major.
    // 8 is a multiple of SUB, so a warp's sub-tiles share one column of sub-tiles: B loads once per step.
    static_assert(8 % SUB == 0, "a warp's sub-tiles in one column");
    template <int BK, int LD>
    __device__ void add(const S (*As)[LD], const S (*Bs)[LD]) {
        const int warp = threadIdx.x >> 5;
        if (warp >= SUB * SUB) return;  // TILE 32: warps 4 to 7 have no sub-tile
        const int c = warp % SUB;
#pragma unroll
        for (int kk = 0; kk < BK; kk += W::K) {
            typename W::in a, b;
            W::load_b(b, &Bs[kk][16 * c], LD);
#pragma unroll
            for (int p = 0; p < PER_WARP; ++p) {
                const int s = warp + 8 * p;
                if (s >= SUB * SUB) break;  // the same for the whole warp
                W::load_a(a, &As[kk][16 * (s / SUB)], LD);
                W::mma(acc[p], a, b);
            }
        }
    }

    // The tile's sums into each thread's out[m][n] = element (ty + 16 m, tx + 16 n), where the SIMT
    // path holds them, so the rest of the product (split-K, epilogue) is the same. All threads call it.
    template <int TM, int TN>
    __device__ void take(float (&out)[TM][TN]) {
        __shared__ __align__(32) float Cs[TILE][TILE + 4];
        const int warp = threadIdx.x >> 5;
#pragma unroll
        for (int p = 0; p < PER_WARP; ++p) {
            const int s = warp + 8 * p;
            if (s >= SUB * SUB) break;
            W::store(&Cs[16 * (s / SUB)][16 * (s % SUB)], acc[p], TILE + 4);
        }
        __syncthreads();
        const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
        for (int m = 0; m < TM; ++m)
#pragma unroll
            for (int n = 0; n < TN; ++n) out[m][n] = Cs[ty + 16 * m][tx + 16 * n];
    }
};
#endif

// C = op(A) @ op(B), extended and finished as above. op(A) is M x K, op(B) is K x N, C is M x N,
// row-major with leading dimensions lda, ldb, ldc (TA / TB: A / B is stored transposed, as
// gemm.cu). bias_mode XPNET_BIAS_IN: k runs to K inclusive, op(A)[i, K] = 1 and op(B)[K, j] =
// bias[j]. XPNET_BIAS_OUT: i runs to M inclusive, op(A)[M, k] = 1 and row M of the result goes
// to bias[j] (without epilogue). aux has leading dimension ld_aux. Pointers a launch does not
// use (bias, aux, partial, tile_counters) may point anywhere valid: they are not read.
//
// Grid (ceil(N / TILE), ceil(M' / TILE), splits), 256 threads. With splits > 1, block z sums
// k in [z * k_per_split, (z + 1) * k_per_split) into partial + z * M' * N; the last block of a
// tile to arrive (tile_counters, zero before the launch and left zero after it) adds the
// partials z = 0, 1, ... and stores. (gemm.cu is the generic captured step's product, the same
// tiling with a separate split-K sum; it stays as measured on the GPU until this one has been.)
// PREC (XPNET_PREC_*): the product's precision; the tensor-core ones take T = float only.
//
// xpnet_gemm_tile is the work of one block (blk) of that grid, with its shared memory (As, Bs, am_last)
// passed in; xpnet_fused_gemm runs it as the block it is, and the persistent step (COHERENT loads)
// as the blocks of each product in turn.
//
// BK values of k are staged per round: with XPNET_MAX_BK 64, TILE * BK = 2048 values of op(A)
// and as many of op(B), 8 of each per thread, all loads issued before the first is stored, so a
// round waits on memory once. On the reference network a block sums 64 to 128 values of k, and
// the step reaches 2.3% of the H100's FP32 peak (bench/results/README.md): with BK = 16 a block
// waited on memory and a barrier 4 to 8 times. That this is where the time goes is a reading of
// the code, not yet a measurement: bench.launches times both (XPNET_MAX_BK 16 is the old depth).
template <typename T, int TILE, int PREC>
struct xpnet_gemm_stage {
    static constexpr int BK = 2048 / TILE < XPNET_MAX_BK ? 2048 / TILE : XPNET_MAX_BK;
    // wmma loads need rows of a multiple of 16 bytes, 32-byte aligned; the SIMT path pads by one
    static constexpr int LD = TILE + (PREC == XPNET_PREC_HIGHEST ? 1 : PREC == XPNET_PREC_TF32 ? 4 : 8);
    using S = typename xpnet_staged<T, PREC>::type;  // what shared memory holds: As[BK][LD], Bs[BK][LD]
};

template <typename T, int TILE, bool TA, bool TB, int PREC, bool COHERENT>
__device__ __forceinline__ void xpnet_gemm_tile(
        const xpnet_block& blk, typename xpnet_gemm_stage<T, TILE, PREC>::S (*As)[xpnet_gemm_stage<T, TILE, PREC>::LD],
        typename xpnet_gemm_stage<T, TILE, PREC>::S (*Bs)[xpnet_gemm_stage<T, TILE, PREC>::LD], int& am_last,
        const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, const int M, const int N, const int K,
        const int lda, const int ldb, const int ldc, T* __restrict__ bias, const int bias_mode,
        const int epi, const int code, const T* __restrict__ aux, const int ld_aux, const T lam,
        T* __restrict__ partial, int* __restrict__ tile_counters, const int k_per_split) {
    using stage = xpnet_gemm_stage<T, TILE, PREC>;
    using S = typename stage::S;
    constexpr int BK = stage::BK, LD = stage::LD, TM = TILE / 16, TN = TILE / 16;
    constexpr int PER_THREAD = TILE * BK / 256;
    static_assert(BK % 16 == 0 && PER_THREAD * 256 == TILE * BK, "whole wmma steps, whole rounds of 256 threads");
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int m_rows = bias_mode == XPNET_BIAS_OUT ? M + 1 : M;
    const int k_all = bias_mode == XPNET_BIAS_IN ? K + 1 : K;
    const int m0 = blk.y * TILE, n0 = blk.x * TILE;
    const int k_begin = blk.z * k_per_split;
    const int k_end = min(k_all, k_begin + k_per_split);
    // staged value idx (0 to TILE * BK - 1) of a round is op(A)'s (i, k) and op(B)'s (k, j), taken
    // along whichever index is contiguous in memory, so that the global loads coalesce
    const auto a_at = [](const int idx, int& i, int& k) { i = TA ? idx % TILE : idx / BK; k = TA ? idx / TILE : idx % BK; };
    const auto b_at = [](const int idx, int& k, int& j) { j = TB ? idx / BK : idx % TILE; k = TB ? idx % BK : idx / TILE; };

    T acc[TM][TN];
#pragma unroll
    for (int m = 0; m < TM; ++m)
#pragma unroll
        for (int n = 0; n < TN; ++n) acc[m][n] = T(0);
    xpnet_tc_tile<TILE, PREC> tc;
    if constexpr (PREC != XPNET_PREC_HIGHEST) tc.zero();

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        T a_vals[PER_THREAD], b_vals[PER_THREAD];
#pragma unroll
        for (int r = 0; r < PER_THREAD; ++r) {
            int i, k, j;
            a_at(threadIdx.x + 256 * r, i, k);
            int gi = m0 + i, gk = k0 + k;
            T v = T(0);
            if (gk < k_end) {
                if (gi < M && gk < K) v = xpnet_load<COHERENT>(A + (TA ? (long long)gk * lda + gi : (long long)gi * lda + gk));
                else if (gi < m_rows && (gi == M || gk == K)) v = T(1);  // the row or column of ones
            }
            a_vals[r] = v;
            b_at(threadIdx.x + 256 * r, k, j);
            const int gj = n0 + j;
            gk = k0 + k;
            v = T(0);
            if (gj < N && gk < k_end) {
                if (gk < K) v = xpnet_load<COHERENT>(B + (TB ? (long long)gj * ldb + gk : (long long)gk * ldb + gj));
                else v = xpnet_load<COHERENT>(bias + gj);  // gk == K: the bias row (XPNET_BIAS_IN)
            }
            b_vals[r] = v;
        }
#pragma unroll
        for (int r = 0; r < PER_THREAD; ++r) {
            int i, k, j;
            a_at(threadIdx.x + 256 * r, i, k);
            As[k][i] = xpnet_stage<PREC, S>(a_vals[r]);
            b_at(threadIdx.x + 256 * r, k, j);
            Bs[k][j] = xpnet_stage<PREC, S>(b_vals[r]);
        }
        __syncthreads();
        if constexpr (PREC != XPNET_PREC_HIGHEST) {
            tc.template add<BK, LD>(As, Bs);
        } else {
#pragma unroll
            for (int k = 0; k < BK; ++k) {
                T a[TM], b[TN];
#pragma unroll
                for (int m = 0; m < TM; ++m) a[m] = As[k][ty + 16 * m];
#pragma unroll
                for (int n = 0; n < TN; ++n) b[n] = Bs[k][tx + 16 * n];
#pragma unroll
                for (int m = 0; m < TM; ++m)
#pragma unroll
                    for (int n = 0; n < TN; ++n) acc[m][n] += a[m] * b[n];
            }
        }
        __syncthreads();
    }
    if constexpr (PREC != XPNET_PREC_HIGHEST) tc.take(acc);  // from here on, the same for every PREC

    const int splits = blk.gz;
    const long long plane = (long long)m_rows * N;
    if (splits > 1) {  // leave this split's sums; the tile's last block finishes them
#pragma unroll
        for (int m = 0; m < TM; ++m) {
            const int i = m0 + ty + 16 * m;
#pragma unroll
            for (int n = 0; n < TN; ++n) {
                const int j = n0 + tx + 16 * n;
                if (i < m_rows && j < N) partial[blk.z * plane + (long long)i * N + j] = acc[m][n];
            }
        }
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            const int tile = blk.y * blk.gx + blk.x;
            am_last = atomicAdd(&tile_counters[tile], 1) == splits - 1;
            if (am_last) tile_counters[tile] = 0;  // every split has arrived: ready for the next launch
        }
        __syncthreads();
        if (!am_last) return;
        __threadfence();
    }
#pragma unroll
    for (int m = 0; m < TM; ++m) {
        const int i = m0 + ty + 16 * m;
#pragma unroll
        for (int n = 0; n < TN; ++n) {
            const int j = n0 + tx + 16 * n;
            if (i >= m_rows || j >= N) continue;
            T s = acc[m][n];
            if (splits > 1) {
                s = T(0);
                for (int z = 0; z < splits; ++z) s += __ldcg(partial + z * plane + (long long)i * N + j);
            }
            if (i == M) bias[j] = s;  // the bias gradient row (XPNET_BIAS_OUT)
            else C[(long long)i * ldc + j] = xpnet_epilogue<COHERENT>(s, epi, code, aux, (long long)i * ld_aux + j, lam);
        }
    }
}

template <typename T, int TILE, bool TA, bool TB, int PREC = XPNET_PREC_HIGHEST>
__global__ void __launch_bounds__(256) xpnet_fused_gemm(
        const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, const int M, const int N, const int K,
        const int lda, const int ldb, const int ldc, T* __restrict__ bias, const int bias_mode,
        const int epi, const int code, const T* __restrict__ aux, const int ld_aux, const T lam,
        T* __restrict__ partial, int* __restrict__ tile_counters, const int k_per_split) {
    using stage = xpnet_gemm_stage<T, TILE, PREC>;
    __shared__ __align__(32) typename stage::S As[stage::BK][stage::LD];
    __shared__ __align__(32) typename stage::S Bs[stage::BK][stage::LD];
    __shared__ int am_last;
    xpnet_gemm_tile<T, TILE, TA, TB, PREC, false>(xpnet_launched_block(), As, Bs, am_last, A, B, C, M, N, K, lda, ldb,
                                                  ldc, bias, bias_mode, epi, code, aux, ld_aux, lam, partial,
                                                  tile_counters, k_per_split);
}

// The sum of v over a block's 256 threads, in a fixed order (the same on every run), returned to every
// thread. part: 256 doubles of shared memory; all threads of the block call it.
__device__ __forceinline__ double xpnet_block_sum(const double v, double* part) {
    __syncthreads();  // part may still be being read, from an earlier sum
    part[threadIdx.x] = v;
    __syncthreads();
    for (int half = 128; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    return part[0];
}

// The loss of one batch and its gradient with respect to the last layer's pre-activation.
// One block of 256 threads; a thread per row (rows strided by 256). out (N, C) is the network's
// output, the last activation's (code out_code) output. labels (N,) class indices (loss 0) or
// targets (N, C) (losses 1, 2), as U. grad (N, C) receives dL/dz. result[0] = mean loss of the
// rows (without L2), result[1] = correct rows.
// xpnet_loss_rows is the block's work, with its shared memory (part, 256 doubles) passed in; the
// persistent step runs it with COHERENT loads (xpnet_load) of out and labels.
template <bool COHERENT, typename T, typename U>
__device__ __forceinline__ void xpnet_loss_rows(double* part, const T* __restrict__ out, const U* __restrict__ labels,
                                                T* __restrict__ grad, const int N, const int C, const int loss_code,
                                                const int out_code, double* __restrict__ result) {
    const T inv_n = T(1.0 / N);
    double total = 0.0, right = 0.0;
    for (int i = threadIdx.x; i < N; i += 256) {
        const T* z = out + (long long)i * C;
        T* g = grad + (long long)i * C;
        if (loss_code == 0) {
            T m = xpnet_load<COHERENT>(z);
            int best = 0;
            for (int j = 1; j < C; ++j) {
                const T v = xpnet_load<COHERENT>(z + j);
                if (v > m) { m = v; best = j; }
            }
            T s = T(0);
            for (int j = 0; j < C; ++j) {
                const T e = exp(xpnet_load<COHERENT>(z + j) - m);
                g[j] = e;
                s += e;
            }
            const long long label = (long long)xpnet_load<COHERENT>(labels + i);
            const T row_scale = inv_n / s;
            for (int j = 0; j < C; ++j) g[j] *= row_scale;
            g[label] -= inv_n;
            total += (double)(log(s) - (xpnet_load<COHERENT>(z + label) - m));
            if (best == label && m == m) right += 1.0;  // a row with NaN is never right
        } else if (loss_code == 1) {
            bool all_right = true;
            const U* t = labels + (long long)i * C;
            for (int j = 0; j < C; ++j) {
                const T v = xpnet_load<COHERENT>(z + j), tj = (T)xpnet_load<COHERENT>(t + j);
                const T e = exp(-fabs(v));
                total += (double)((v > T(0) ? v : T(0)) + log1p(e) - v * tj);
                const T p = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
                g[j] = (p - tj) * inv_n;
                if ((v > T(0)) != (tj > T(0.5))) all_right = false;
            }
            if (all_right) right += 1.0;
        } else {
            const U* t = labels + (long long)i * C;
            for (int j = 0; j < C; ++j) {
                const T diff = xpnet_load<COHERENT>(z + j) - (T)xpnet_load<COHERENT>(t + j);
                total += 0.5 * (double)(diff * diff);
                g[j] = diff * inv_n;
            }
        }
        if (out_code != 0)
            for (int j = 0; j < C; ++j) g[j] = xpnet_act_grad(g[j], xpnet_load<COHERENT>(z + j), out_code);
    }
    total = xpnet_block_sum(total, part);
    right = xpnet_block_sum(right, part);
    if (threadIdx.x == 0) {
        result[0] = total / N;
        result[1] = right;
    }
}

template <typename T, typename U>
__global__ void __launch_bounds__(256) xpnet_loss_grad(const T* __restrict__ out, const U* __restrict__ labels,
                                                       T* __restrict__ grad, const int N, const int C,
                                                       const int loss_code, const int out_code,
                                                       double* __restrict__ result) {
    __shared__ double part[256];
    xpnet_loss_rows<false>(part, out, labels, grad, N, C, loss_code, out_code, result);
}

// The optimizer's update of all parameters (flat, size elements), the L2 penalty of the weights
// before it, and the epoch statistics of training_step.cu's xpnet_step_stats, in one kernel.
//   opt_code: 0 SGD, 1 SGD with momentum (slot1: velocity), 2 Nesterov, 3 Adam (slot1 m, slot2 v;
//     the step number is counters[3] + 1, read on the device as cupy_graph's adam_device_step),
//     4 Adam with scikit-learn's epsilon, eps / sqrt(1 - beta2^t) (xpnet.ops.adam_eps).
//   w_segments: (n_segments, 2) [offset, size] of each weight matrix in params (the L2 penalty's).
//   loss_result: xpnet_loss_grad's result. penalty_partial: a double per block; block_counter: one int,
//   zero before the launch and left zero after it. The last block to finish adds the penalty
//   (l2_scale / 2 * sum W^2) to the loss and updates sums and counters as xpnet_step_stats does.
// 256 threads per block.
//
// xpnet_update_block is the work of block blk, with its shared memory (part: 256 doubles, am_last)
// passed in; the persistent step runs it with COHERENT loads (xpnet_load).
template <bool COHERENT, typename T>
__device__ __forceinline__ void xpnet_update_block(
        const xpnet_block& blk, double* part, int& am_last,
        T* __restrict__ params, const T* __restrict__ grads, T* __restrict__ slot1, T* __restrict__ slot2,
        const long long size, const int opt_code, const double lr, const double beta1, const double beta2,
        const double eps, const double momentum, const long long* __restrict__ w_segments, const int n_segments,
        const double l2_scale, const double* __restrict__ loss_result, const double rows,
        double* __restrict__ penalty_partial, int* __restrict__ block_counter,
        double* __restrict__ sums, long long* __restrict__ counters) {
    const double t = (double)(xpnet_load<COHERENT>(counters + 3) + 1);
    const T step_size = (T)(lr / (1.0 - pow(beta1, t)));
    const double bias2 = sqrt(1.0 - pow(beta2, t));
    const T bias2_sqrt = (T)bias2;
    const T eps_t = (T)(opt_code == 4 ? eps / bias2 : eps);
    const T b1 = (T)beta1, b2 = (T)beta2, lr_t = (T)lr, mu = (T)momentum;
    const bool l2 = l2_scale != 0.0;  // the same for every thread: barriers under it are safe
    double penalty = 0.0;
    for (long long idx = blk.x * 256LL + threadIdx.x; idx < size; idx += (long long)blk.gx * 256) {
        const T p = xpnet_load<COHERENT>(params + idx), g = xpnet_load<COHERENT>(grads + idx);
        if (l2)
            for (int s = 0; s < n_segments; ++s)
                if (idx >= xpnet_load<COHERENT>(w_segments + 2 * s)
                    && idx < xpnet_load<COHERENT>(w_segments + 2 * s) + xpnet_load<COHERENT>(w_segments + 2 * s + 1)) {
                    penalty += (double)(p * p);
                    break;
                }
        if (opt_code >= 3) {
            const T m = b1 * xpnet_load<COHERENT>(slot1 + idx) + (T(1) - b1) * g;
            const T v = b2 * xpnet_load<COHERENT>(slot2 + idx) + (T(1) - b2) * g * g;
            slot1[idx] = m;
            slot2[idx] = v;
            params[idx] = p - step_size * m / (sqrt(v) / bias2_sqrt + eps_t);
        } else if (opt_code == 0) {
            params[idx] = p - lr_t * g;
        } else {
            const T vi = mu * xpnet_load<COHERENT>(slot1 + idx) - lr_t * g;
            slot1[idx] = vi;
            params[idx] = opt_code == 2 ? p + (mu * vi - lr_t * g) : p + vi;
        }
    }
    if (l2) penalty = xpnet_block_sum(penalty, part);
    // Before this block counts itself done, every one of its threads has read counters[3] (at the
    // top): the last block to finish advances it, and a thread reading it after would take the next
    // step's bias correction. (The CUDA emulation runs blocks one after another, so it cannot show this.)
    __syncthreads();
    if (threadIdx.x == 0) {
        if (l2) penalty_partial[blk.x] = penalty;
        __threadfence();
        am_last = atomicAdd(block_counter, 1) == (int)blk.gx - 1;
    }
    __syncthreads();
    if (!am_last) return;
    __threadfence();
    double total = 0.0;
    if (l2) {  // the blocks' penalties, summed by the last block's threads
        double mine = 0.0;
        for (int b = threadIdx.x; b < (int)blk.gx; b += 256) mine += __ldcg(penalty_partial + b);
        total = xpnet_block_sum(mine, part);
    }
    if (threadIdx.x != 0) return;
    *block_counter = 0;
    // as the reference: the loss in the parameters' precision, the penalty added to it there
    const T value = (T)__ldcg(loss_result) + (T)(0.5 * l2_scale) * (T)total;
    xpnet_record_step<COHERENT>(value, (long long)__ldcg(loss_result + 1), rows, sums, counters);
}

template <typename T>
__global__ void __launch_bounds__(256) xpnet_update_step(
        T* __restrict__ params, const T* __restrict__ grads, T* __restrict__ slot1, T* __restrict__ slot2,
        const long long size, const int opt_code, const double lr, const double beta1, const double beta2,
        const double eps, const double momentum, const long long* __restrict__ w_segments, const int n_segments,
        const double l2_scale, const double* __restrict__ loss_result, const double rows,
        double* __restrict__ penalty_partial, int* __restrict__ block_counter,
        double* __restrict__ sums, long long* __restrict__ counters) {
    __shared__ double part[256];
    __shared__ int am_last;
    xpnet_update_block<false>(xpnet_launched_block(), part, am_last, params, grads, slot1, slot2, size, opt_code, lr,
                              beta1, beta2, eps, momentum, w_segments, n_segments, l2_scale, loss_result, rows,
                              penalty_partial, block_counter, sums, counters);
}

#ifdef XPNET_NVCC_CHECK
template __global__ void xpnet_fused_gemm<float, 32, false, false>(const float*, const float*, float*, int, int, int, int, int, int, float*, int, int, int, const float*, int, float, float*, int*, int);
template __global__ void xpnet_fused_gemm<float, 64, true, false>(const float*, const float*, float*, int, int, int, int, int, int, float*, int, int, int, const float*, int, float, float*, int*, int);
template __global__ void xpnet_fused_gemm<double, 32, false, true>(const double*, const double*, double*, int, int, int, int, int, int, double*, int, int, int, const double*, int, double, double*, int*, int);
template __global__ void xpnet_loss_grad<float, long long>(const float*, const long long*, float*, int, int, int, int, double*);
template __global__ void xpnet_loss_grad<double, double>(const double*, const double*, double*, int, int, int, int, double*);
template __global__ void xpnet_update_step<float>(float*, const float*, float*, float*, long long, int, double, double, double, double, double, const long long*, int, double, const double*, double, double*, int*, double*, long long*);
template __global__ void xpnet_update_step<double>(double*, const double*, double*, double*, long long, int, double, double, double, double, double, const long long*, int, double, const double*, double, double*, int*, double*, long long*);
#endif
