// The two pieces of a captured training step that no generic operation provides.
//
// A CUDA graph replays fixed pointers and fixed scalars, so everything that changes
// from one step to the next is read from device memory: the batch's position in
// the epoch's permutation, and the optimizer's step count (for Adam's bias
// correction, see cupy_graph.ADAM_DEVICE_STEP). Both live in `counters`:
//   counters[0]  batches done in this epoch (selects the batch's rows of `order`)
//   counters[1]  correct predictions so far in this epoch
//   counters[2]  index of the first batch whose loss was not finite, or -1
//   counters[3]  optimizer steps taken (over the optimizer's whole life)
// and `sums` holds [sum of batch loss * batch rows, the first non-finite loss].

// The block a kernel body runs as, and the grid's size in blocks. A kernel launched on its own
// runs as the block it is (xpnet_launched_block); the persistent step (persistent_step.cu) runs
// the same bodies as the blocks of each launch of the fused plan in turn, several per real block.
struct xpnet_block {
    unsigned x, y, z, gx, gy, gz;
};

__device__ __forceinline__ xpnet_block xpnet_launched_block() {
    return {blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z};
}

// A load from global memory. COHERENT: from L2 (ld.global.cg), bypassing the multiprocessor's L1
// and read-only caches, which are not kept coherent within a kernel: the persistent step reads
// buffers that other blocks rewrote earlier in the same launch. Otherwise a plain load.
template <bool COHERENT, typename T>
__device__ __forceinline__ T xpnet_load(const T* p) {
    if constexpr (COHERENT) return __ldcg(p);
    else return *p;
}

// xb[r, :] = X[order[counters[0] * batch_stride + r], :] and yb[r, :] likewise, for r < rows,
// by block `blk` of a grid-stride loop.
template <bool COHERENT, typename T, typename U>
__device__ __forceinline__ void xpnet_gather_rows(const xpnet_block& blk, const T* __restrict__ X,
                                                  const U* __restrict__ Y, const long long* __restrict__ order,
                                                  const long long* __restrict__ counters, const int batch_stride,
                                                  const int rows, const int x_cols, const int y_cols,
                                                  T* __restrict__ xb, U* __restrict__ yb) {
    const long long base = xpnet_load<COHERENT>(counters) * batch_stride;
    const long long x_size = (long long)rows * x_cols, y_size = (long long)rows * y_cols;
    for (long long idx = blk.x * (long long)blockDim.x + threadIdx.x; idx < x_size + y_size;
         idx += (long long)blk.gx * blockDim.x) {
        if (idx < x_size) {
            const long long r = idx / x_cols, j = idx % x_cols;
            xb[idx] = xpnet_load<COHERENT>(X + xpnet_load<COHERENT>(order + base + r) * x_cols + j);
        } else {
            const long long i = idx - x_size, r = i / y_cols, j = i % y_cols;
            yb[i] = xpnet_load<COHERENT>(Y + xpnet_load<COHERENT>(order + base + r) * y_cols + j);
        }
    }
}

template <typename T, typename U>
__global__ void xpnet_gather_batch(const T* __restrict__ X, const U* __restrict__ Y,
                                   const long long* __restrict__ order, const long long* __restrict__ counters,
                                   const int batch_stride, const int rows, const int x_cols, const int y_cols,
                                   T* __restrict__ xb, U* __restrict__ yb) {
    xpnet_gather_rows<false>(xpnet_launched_block(), X, Y, order, counters, batch_stride, rows, x_cols, y_cols, xb, yb);
}

// Epoch bookkeeping after one step (loss value, correct rows), by one thread (COHERENT: as xpnet_load).
template <bool COHERENT = false, typename T>
__device__ __forceinline__ void xpnet_record_step(const T value, const long long n_correct, const double rows,
                                                  double* __restrict__ sums, long long* __restrict__ counters) {
    sums[0] = xpnet_load<COHERENT>(sums) + (double)value * rows;
    counters[1] = xpnet_load<COHERENT>(counters + 1) + n_correct;
    if (!isfinite(value) && xpnet_load<COHERENT>(counters + 2) < 0) {
        counters[2] = xpnet_load<COHERENT>(counters);
        sums[1] = (double)value;
    }
    counters[0] = xpnet_load<COHERENT>(counters) + 1;
    counters[3] = xpnet_load<COHERENT>(counters + 3) + 1;
}

// Epoch bookkeeping after one step, on one thread: no host synchronisation.
template <typename T>
__global__ void xpnet_step_stats(const T* __restrict__ loss, const long long* __restrict__ n_correct,
                                 const double rows, double* __restrict__ sums, long long* __restrict__ counters) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    xpnet_record_step(loss[0], n_correct[0], rows, sums, counters);
}

#ifdef XPNET_NVCC_CHECK
template __global__ void xpnet_gather_batch<float, long long>(const float*, const long long*, const long long*, const long long*, int, int, int, int, float*, long long*);
template __global__ void xpnet_gather_batch<double, double>(const double*, const double*, const long long*, const long long*, int, int, int, int, double*, double*);
template __global__ void xpnet_step_stats<float>(const float*, const long long*, double, double*, long long*);
template __global__ void xpnet_step_stats<double>(const double*, const long long*, double, double*, long long*);
#endif
