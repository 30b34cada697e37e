// Softmax cross-entropy value and gradient without a one-hot matrix.
//
// Two kernels, the same result:
// - xpnet_softmax_ce_warp_rows: one warp per row (8 rows per 256-thread block), for rows of
//   up to a few thousand classes. Each lane keeps a running (max, sum of exp) over its
//   columns (online softmax, 8 loads in flight per lane), the lanes combine their pairs by warp shuffles, and a
//   second pass writes the gradient: two reads of the row, no block-wide barrier.
// - xpnet_softmax_ce_rows: one block per row with block-wide reductions, for wide rows.
//
// For row i of logits z (N x C) and label t_i:
//   m = max_j z_ij;  s = sum_j exp(z_ij - m)
//   grad_ij  = (exp(z_ij - m) / s - [j == t_i]) / N
//   loss_i   = log(s) - (z_i,t_i - m)
// The row is read once for the max, once for the sum of exponentials and once
// while the gradient row is written; no one-hot matrix exists anywhere.
// A label outside [0, C) writes NaN as the row's loss (and no gradient 1/N term),
// so the training loop's non-finite check reports it instead of reading out of bounds.

template <typename T>
__device__ __forceinline__ T xpnet_warp_sum(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

template <typename T>
__device__ __forceinline__ T xpnet_warp_max(T v) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        T other = __shfl_down_sync(0xffffffffu, v, offset);
        v = other > v ? other : v;
    }
    return v;
}

// Block-wide reductions; every thread gets the result. `shared` holds 32 values.
template <typename T>
__device__ T xpnet_block_sum(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = xpnet_warp_sum(v);
    __syncthreads();  // `shared` may still be read from the previous reduction
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = threadIdx.x < warps ? shared[lane] : T(0);
    if (warp == 0) v = xpnet_warp_sum(v);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

template <typename T>
__device__ T xpnet_block_max(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = xpnet_warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = threadIdx.x < warps ? shared[lane] : shared[0];
    if (warp == 0) v = xpnet_warp_max(v);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    return shared[0];
}

template <typename T>
__global__ void xpnet_softmax_ce_rows(const T* __restrict__ logits, const long long* __restrict__ labels,
                                      const int n_cols, const T inv_n, T* __restrict__ grad,
                                      T* __restrict__ row_loss) {
    __shared__ T shared[32];
    const long long row = blockIdx.x;
    const T* z = logits + row * n_cols;
    T* g = grad + row * n_cols;

    T m = z[0];
    for (int j = threadIdx.x; j < n_cols; j += blockDim.x) m = z[j] > m ? z[j] : m;
    m = xpnet_block_max(m, shared);

    T s = T(0);
    for (int j = threadIdx.x; j < n_cols; j += blockDim.x) s += exp(z[j] - m);
    s = xpnet_block_sum(s, shared);

    const long long t = labels[row];
    const bool valid = t >= 0 && t < n_cols;
    const T scale = inv_n / s;
    for (int j = threadIdx.x; j < n_cols; j += blockDim.x) {
        const T p = exp(z[j] - m) * scale;
        g[j] = (valid && j == t) ? p - inv_n : p;
    }
    if (threadIdx.x == 0) row_loss[row] = valid ? log(s) - (z[t] - m) : sqrt(T(-1));  // NaN flags a bad label
}

// -inf without <cmath> (NVRTC compiles this file without the standard headers).
template <typename T> __device__ __forceinline__ T xpnet_neg_inf();
template <> __device__ __forceinline__ float xpnet_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double xpnet_neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }

// Merge two running (max, sum of exp(x - max)) pairs.
template <typename T>
__device__ __forceinline__ void xpnet_online_merge(T& m, T& s, const T m2, const T s2) {
    const T mm = m2 > m ? m2 : m;
    const T a = s == T(0) ? T(0) : s * exp(m - mm);  // an empty pair (m = -inf) adds nothing
    const T b = s2 == T(0) ? T(0) : s2 * exp(m2 - mm);
    m = mm;
    s = a + b;
}

template <typename T>
__global__ void xpnet_softmax_ce_warp_rows(const T* __restrict__ logits, const long long* __restrict__ labels,
                                           const long long n_rows, const int n_cols, const T inv_n,
                                           T* __restrict__ grad, T* __restrict__ row_loss) {
    const int lane = threadIdx.x & 31;
    const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n_rows) return;  // the whole warp leaves together: the shuffles below stay full
    const T* z = logits + row * n_cols;
    T* g = grad + row * n_cols;

    // Pass 1: each lane folds chunks of UNROLL values (UNROLL independent loads in flight)
    // into its running (max, sum): the chunk's max first, then one rescale per chunk.
    constexpr int UNROLL = 8;
    const T neg_inf = xpnet_neg_inf<T>();
    T m = neg_inf, s = T(0);
    for (int base = lane; base < n_cols; base += 32 * UNROLL) {
        T x[UNROLL];
        T chunk_max = neg_inf;
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int j = base + 32 * u;
            x[u] = j < n_cols ? z[j] : neg_inf;
            chunk_max = x[u] > chunk_max ? x[u] : chunk_max;
        }
        const T new_m = chunk_max > m ? chunk_max : m;
        T add = T(0);
#pragma unroll
        for (int u = 0; u < UNROLL; ++u)
            if (base + 32 * u < n_cols) add += exp(x[u] - new_m);  // a NaN logit makes the sum NaN
        s = (s == T(0) ? T(0) : s * exp(m - new_m)) + add;
        m = new_m;
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const T m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const T s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        xpnet_online_merge(m, s, m2, s2);
    }

    const long long t = labels[row];
    const bool valid = t >= 0 && t < n_cols;
    const T scale = inv_n / s;
#pragma unroll 8
    for (int j = lane; j < n_cols; j += 32) {
        const T p = exp(z[j] - m) * scale;
        g[j] = (valid && j == t) ? p - inv_n : p;
    }
    if (lane == 0) row_loss[row] = valid ? log(s) - (z[t] - m) : sqrt(T(-1));  // NaN flags a bad label
}

#ifdef XPNET_NVCC_CHECK
// Explicit instantiations so that `nvcc -c -DXPNET_NVCC_CHECK` compiles both kernels
// (CuPy instantiates them at run time through name_expressions instead).
template __global__ void xpnet_softmax_ce_rows<float>(const float*, const long long*, int, float, float*, float*);
template __global__ void xpnet_softmax_ce_rows<double>(const double*, const long long*, int, double, double*, double*);
template __global__ void xpnet_softmax_ce_warp_rows<float>(const float*, const long long*, long long, int, float, float*, float*);
template __global__ void xpnet_softmax_ce_warp_rows<double>(const double*, const long long*, long long, int, double, double*, double*);
#endif
