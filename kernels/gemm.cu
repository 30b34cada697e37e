// Matrix product C = op(A) @ op(B) for the captured (CUDA-graph) training step.
//
// CuPy refuses cuBLAS calls during stream capture, so a step that is replayed as
// one CUDA graph needs its own product. This one is a plain shared-memory tiled
// kernel: 256 threads (16 x 16) compute a BM x BN tile of C, each thread a
// (BM/16) x (BN/16) block of it with a stride of 16 rows and columns, so that
// shared-memory reads are conflict-free and the stores to C coalesce.
//
// Layouts (all row-major, leading dimensions in elements):
//   op(A) is M x K:  A[i * lda + k]  or, when TA, A[k * lda + i]   (A is a transposed view)
//   op(B) is K x N:  B[k * ldb + j]  or, when TB, B[j * ldb + k]
//   C is M x N:      C[i * ldc + j]
// Tiles are loaded along whichever index is contiguous in memory, so the global
// loads coalesce for every layout.
//
// Split-K: block z sums k in [z * k_per_split, (z + 1) * k_per_split) and writes
// its partial product to C + z * M * ldc; xpnet_splitk_sum then adds the partials
// in a fixed order (deterministic, no atomics). Small products (a batch of 128
// against a 784 x 256 weight) otherwise leave most of the chip idle.

template <typename T, int BM, int BN, bool TA, bool TB>
__global__ void __launch_bounds__(256) xpnet_gemm(const T* __restrict__ A, const T* __restrict__ B,
                                                  T* __restrict__ C, const int M, const int N, const int K,
                                                  const int lda, const int ldb, const int ldc, const int k_per_split) {
    constexpr int BK = 16, TM = BM / 16, TN = BN / 16;
    __shared__ T As[BK][BM + 1];
    __shared__ T Bs[BK][BN + 1];
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int k_begin = blockIdx.z * k_per_split;
    const int k_end = min(K, k_begin + k_per_split);
    C += (long long)blockIdx.z * M * ldc;

    T acc[TM][TN];
#pragma unroll
    for (int m = 0; m < TM; ++m)
#pragma unroll
        for (int n = 0; n < TN; ++n) acc[m][n] = T(0);

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        for (int idx = threadIdx.x; idx < BM * BK; idx += 256) {
            const int i = TA ? idx % BM : idx / BK;
            const int k = TA ? idx / BM : idx % BK;
            const int gi = m0 + i, gk = k0 + k;
            T v = T(0);
            if (gi < M && gk < k_end) v = TA ? A[(long long)gk * lda + gi] : A[(long long)gi * lda + gk];
            As[k][i] = v;
        }
        for (int idx = threadIdx.x; idx < BK * BN; idx += 256) {
            const int j = TB ? idx / BK : idx % BN;
            const int k = TB ? idx % BK : idx / BN;
            const int gj = n0 + j, gk = k0 + k;
            T v = T(0);
            if (gj < N && gk < k_end) v = TB ? B[(long long)gj * ldb + gk] : B[(long long)gk * ldb + gj];
            Bs[k][j] = v;
        }
        __syncthreads();
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
        __syncthreads();
    }
#pragma unroll
    for (int m = 0; m < TM; ++m) {
        const int i = m0 + ty + 16 * m;
#pragma unroll
        for (int n = 0; n < TN; ++n) {
            const int j = n0 + tx + 16 * n;
            if (i < M && j < N) C[(long long)i * ldc + j] = acc[m][n];
        }
    }
}

// C[i, j] = sum over z of partial[z, i, j], the partials of a split-K product (M x N each, contiguous).
template <typename T>
__global__ void xpnet_splitk_sum(const T* __restrict__ partial, T* __restrict__ C, const int M, const int N,
                                 const int ldc, const int splits) {
    const long long size = (long long)M * N;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < size;
         idx += (long long)gridDim.x * blockDim.x) {
        T s = T(0);
        for (int z = 0; z < splits; ++z) s += partial[z * size + idx];
        C[(idx / N) * ldc + idx % N] = s;
    }
}

#ifdef XPNET_NVCC_CHECK
template __global__ void xpnet_gemm<float, 32, 32, false, false>(const float*, const float*, float*, int, int, int, int, int, int, int);
template __global__ void xpnet_gemm<float, 64, 64, true, true>(const float*, const float*, float*, int, int, int, int, int, int, int);
template __global__ void xpnet_gemm<double, 32, 32, true, false>(const double*, const double*, double*, int, int, int, int, int, int, int);
template __global__ void xpnet_gemm<double, 64, 64, false, true>(const double*, const double*, double*, int, int, int, int, int, int, int);
template __global__ void xpnet_splitk_sum<float>(const float*, float*, int, int, int, int);
template __global__ void xpnet_splitk_sum<double>(const double*, double*, int, int, int, int);
#endif
