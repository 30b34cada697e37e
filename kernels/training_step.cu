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

// xb[r, :] = X[order[counters[0] * batch_stride + r], :] and yb[r, :] likewise, for r < rows.
template <typename T, typename U>
__global__ void xpnet_gather_batch(const T* __restrict__ X, const U* __restrict__ Y,
                                   const long long* __restrict__ order, const long long* __restrict__ counters,
                                   const int batch_stride, const int rows, const int x_cols, const int y_cols,
                                   T* __restrict__ xb, U* __restrict__ yb) {
    const long long base = counters[0] * batch_stride;
    const long long x_size = (long long)rows * x_cols, y_size = (long long)rows * y_cols;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < x_size + y_size;
         idx += (long long)gridDim.x * blockDim.x) {
        if (idx < x_size) {
            const long long r = idx / x_cols, j = idx % x_cols;
            xb[idx] = X[order[base + r] * x_cols + j];
        } else {
            const long long i = idx - x_size, r = i / y_cols, j = i % y_cols;
            yb[i] = Y[order[base + r] * y_cols + j];
        }
    }
}

// Epoch bookkeeping after one step (loss value, correct rows), by one thread.
template <typename T>
__device__ __forceinline__ void xpnet_record_step(const T value, const long long n_correct, const double rows,
                                                  double* __restrict__ sums, long long* __restrict__ counters) {
    sums[0] += (double)value * rows;
    counters[1] += n_correct;
    if (!isfinite(value) && counters[2] < 0) {
        counters[2] = counters[0];
        sums[1] = (double)value;
    }
    counters[0] += 1;
    counters[3] += 1;
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
