// The fused plan's training step as one kernel launch: xpnet_persistent_step.
//
// cuda_step.py plans a step as 3L + 2 launches (fused_step.cu). Here one grid, of at most as many
// blocks as the GPU runs at once, runs those launches as phases: in each phase every real block
// takes the launch's blocks (its "virtual" blocks, numbered as the GPU numbers a grid's blocks) in
// turn, blockIdx.x, blockIdx.x + gridDim.x, ..., running the same device function as that launch's
// kernel would; then the whole grid waits at a barrier before the next phase. What a launch
// boundary did (order, visibility of one kernel's writes to the next) the barrier does, so the
// step computes exactly what the plan computes: same blocks, same sums in the same order, the
// split-K partials and the update's penalty finished by whichever block arrives last, as before.
// It replaces 3L + 1 kernel boundaries with 2L + 2 grid barriers (a layer's weight and input
// gradients, independent, share a phase); whether that is faster is for a GPU run to say
// (bench.launches, XPNET_GRAPH_STEP=persistent).
//
// The phases come from a table in device memory, XPNET_PHASE_SLOTS 64-bit slots per launch
// (persistent_step.py writes it): the kind of launch, its grid, for a product its tile and
// layout, whether the next launch shares its phase, then the launch's arguments in the kernel's
// parameter order from slot XPNET_PHASE_ARGS: pointers as addresses, integers as they are,
// floating-point scalars as the bits of a double.
//
// Loads of anything the step writes go through L2 (xpnet_load<true>): the multiprocessors' L1 and
// read-only caches are not coherent within a launch, and a block may read an address that other
// blocks rewrote since it last read it (the two signal buffers, alternately written and read by
// the backward products, and, for steps > 1, everything).
//
// The barrier needs every block of the grid resident at once. The launch asks for at most
// XPNET_PERSISTENT_BLOCKS_PER_SM blocks per multiprocessor (1 or 2), and the kernel's launch bounds
// make that many fit: 256 threads each, at most 36 KB of shared memory each, and registers capped
// by the compiler (at 2 blocks, 128 per thread: ptxas then spills a few hundred bytes per product,
// where at 1 it uses about 220 and spills nothing; which is faster is for bench.launches to say).
// Before the first launch the host asks the driver how many blocks of the compiled kernel fit on a
// multiprocessor, and launches no more than that (persistent_step.resident_blocks_per_sm): fewer
// blocks per multiprocessor where fewer fit, a refusal where none does, never a grid that could not
// pass its first barrier. A GPU shared with other work may make the barrier wait, not fail.
//
// The products are real calls (__noinline__): inlined into one function, six of them took NVRTC
// more than twice as long to compile and the kernel 255 registers.
//
// Compiled after training_step.cu and fused_step.cu, in one module (cuda_step.module_spec).
// Highest precision only: the tensor-core products stage their operands in other shapes.

#ifndef XPNET_PERSISTENT_BLOCKS_PER_SM
#define XPNET_PERSISTENT_BLOCKS_PER_SM 1
#endif
#define XPNET_PHASE_SLOTS 32
#define XPNET_PHASE_ARGS 8
#define XPNET_PHASE_WITH_NEXT 7
#define XPNET_PHASE_GATHER 0
#define XPNET_PHASE_PRODUCT 1
#define XPNET_PHASE_LOSS 2
#define XPNET_PHASE_UPDATE 3

// A block's own shared memory, declared at the top of a kernel. The CUDA emulation replaces it,
// so that blocks running at once there (emu_launch_concurrent) each have their own.
#ifndef XPNET_BLOCK_SHARED
#define XPNET_BLOCK_SHARED(TYPE, NAME) __shared__ TYPE NAME
#endif

// What one block of the persistent step keeps in shared memory: the products' staged operands
// (the larger of the two tiles' As and Bs), the reductions' 256 doubles and the last-block flag.
template <typename T>
struct xpnet_persistent_shared {
    static constexpr int A32 = xpnet_gemm_stage<T, 32, XPNET_PREC_HIGHEST>::BK * xpnet_gemm_stage<T, 32, XPNET_PREC_HIGHEST>::LD;
    static constexpr int A64 = xpnet_gemm_stage<T, 64, XPNET_PREC_HIGHEST>::BK * xpnet_gemm_stage<T, 64, XPNET_PREC_HIGHEST>::LD;
    static constexpr int STAGED = A32 > A64 ? A32 : A64;
    __align__(32) T a[STAGED];
    __align__(32) T b[STAGED];
    double part[256];
    int am_last;
};

#ifdef XPNET_CUDA_EMULATION
__device__ __forceinline__ int xpnet_volatile_load(int* p) { return xpnet_emu_spin_load(p); }
#else
__device__ __forceinline__ int xpnet_volatile_load(int* p) { return *(volatile int*)p; }
#endif

// Every block of the grid waits here until all have arrived; what any thread wrote before it is
// visible to every thread after it. barrier: two ints [arrived, generation], zero before the first
// launch; arrived is back at zero after each barrier, generation counts them. The usual pattern
// (as cooperative groups' grid sync): one thread per block arrives with an atomic, the last one
// to arrive starts the next generation, the others wait for it.
__device__ __forceinline__ void xpnet_grid_barrier(int* barrier) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const int generation = xpnet_volatile_load(barrier + 1);
        __threadfence();  // the block's writes (ordered before by __syncthreads), and the read above, first
        if (atomicAdd(barrier, 1) == (int)gridDim.x - 1) {
            atomicExch(barrier, 0);
            __threadfence();
            atomicAdd(barrier + 1, 1);
        } else {
            while (xpnet_volatile_load(barrier + 1) == generation) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

template <typename P>
__device__ __forceinline__ P* xpnet_slot_pointer(const long long* d, const int i) {
    return reinterpret_cast<P*>(d[XPNET_PHASE_ARGS + i]);
}
__device__ __forceinline__ int xpnet_slot_int(const long long* d, const int i) { return (int)d[XPNET_PHASE_ARGS + i]; }
__device__ __forceinline__ double xpnet_slot_double(const long long* d, const int i) {
    return __longlong_as_double(d[XPNET_PHASE_ARGS + i]);
}

// Block blk of the product a phase describes (xpnet_fused_gemm's arguments, in its order).
template <typename T, int TILE, bool TA, bool TB>
__device__ __noinline__ void xpnet_persistent_product(const long long* d, const xpnet_block& blk,
                                                      xpnet_persistent_shared<T>& sh) {
    using stage = xpnet_gemm_stage<T, TILE, XPNET_PREC_HIGHEST>;
    using staged = typename stage::S(*)[stage::LD];
    xpnet_gemm_tile<T, TILE, TA, TB, XPNET_PREC_HIGHEST, true>(
        blk, reinterpret_cast<staged>(sh.a), reinterpret_cast<staged>(sh.b), sh.am_last, xpnet_slot_pointer<const T>(d, 0),
        xpnet_slot_pointer<const T>(d, 1), xpnet_slot_pointer<T>(d, 2), xpnet_slot_int(d, 3), xpnet_slot_int(d, 4),
        xpnet_slot_int(d, 5), xpnet_slot_int(d, 6), xpnet_slot_int(d, 7), xpnet_slot_int(d, 8), xpnet_slot_pointer<T>(d, 9),
        xpnet_slot_int(d, 10), xpnet_slot_int(d, 11), xpnet_slot_int(d, 12), xpnet_slot_pointer<const T>(d, 13),
        xpnet_slot_int(d, 14), (T)xpnet_slot_double(d, 15), xpnet_slot_pointer<T>(d, 16), xpnet_slot_pointer<int>(d, 17),
        xpnet_slot_int(d, 18));
}

// Block blk of the launch a phase describes. The products the plan makes: forward (op(A), op(B) as
// stored), weight gradient (A transposed), input gradient (B transposed), with 32 or 64 tiles.
template <typename T, typename U>
__device__ __forceinline__ void xpnet_persistent_phase(const long long* d, const xpnet_block& blk,
                                                       xpnet_persistent_shared<T>& sh) {
    const int kind = (int)d[0];
    if (kind == XPNET_PHASE_GATHER) {
        xpnet_gather_rows<true>(blk, xpnet_slot_pointer<const T>(d, 0), xpnet_slot_pointer<const U>(d, 1),
                                xpnet_slot_pointer<const long long>(d, 2), xpnet_slot_pointer<const long long>(d, 3),
                                xpnet_slot_int(d, 4), xpnet_slot_int(d, 5), xpnet_slot_int(d, 6), xpnet_slot_int(d, 7),
                                xpnet_slot_pointer<T>(d, 8), xpnet_slot_pointer<U>(d, 9));
    } else if (kind == XPNET_PHASE_PRODUCT) {
        const int layout = (int)d[4] * 4 + (int)d[5] * 2 + (int)d[6];  // tile * 4 + TA * 2 + TB
        switch (layout) {
            case 32 * 4 + 0: xpnet_persistent_product<T, 32, false, false>(d, blk, sh); break;
            case 32 * 4 + 2: xpnet_persistent_product<T, 32, true, false>(d, blk, sh); break;
            case 32 * 4 + 1: xpnet_persistent_product<T, 32, false, true>(d, blk, sh); break;
            case 64 * 4 + 0: xpnet_persistent_product<T, 64, false, false>(d, blk, sh); break;
            case 64 * 4 + 2: xpnet_persistent_product<T, 64, true, false>(d, blk, sh); break;
            case 64 * 4 + 1: xpnet_persistent_product<T, 64, false, true>(d, blk, sh); break;
            default: __trap();  // persistent_step.py writes no other product
        }
    } else if (kind == XPNET_PHASE_LOSS) {
        xpnet_loss_rows<true>(sh.part, xpnet_slot_pointer<const T>(d, 0), xpnet_slot_pointer<const U>(d, 1),
                              xpnet_slot_pointer<T>(d, 2), xpnet_slot_int(d, 3), xpnet_slot_int(d, 4), xpnet_slot_int(d, 5),
                              xpnet_slot_int(d, 6), xpnet_slot_pointer<double>(d, 7));
    } else if (kind == XPNET_PHASE_UPDATE) {
        xpnet_update_block<true>(
            blk, sh.part, sh.am_last, xpnet_slot_pointer<T>(d, 0), xpnet_slot_pointer<const T>(d, 1),
            xpnet_slot_pointer<T>(d, 2), xpnet_slot_pointer<T>(d, 3), d[XPNET_PHASE_ARGS + 4], xpnet_slot_int(d, 5),
            xpnet_slot_double(d, 6), xpnet_slot_double(d, 7), xpnet_slot_double(d, 8), xpnet_slot_double(d, 9),
            xpnet_slot_double(d, 10), xpnet_slot_pointer<const long long>(d, 11), xpnet_slot_int(d, 12),
            xpnet_slot_double(d, 13), xpnet_slot_pointer<const double>(d, 14), xpnet_slot_double(d, 15),
            xpnet_slot_pointer<double>(d, 16), xpnet_slot_pointer<int>(d, 17), xpnet_slot_pointer<double>(d, 18),
            xpnet_slot_pointer<long long>(d, 19));
    } else {
        __trap();
    }
}

// steps training steps: each runs the n_phases rows of the table, a grid barrier after each but
// the very last. A row whose XPNET_PHASE_WITH_NEXT slot is set shares its phase with the next row
// (the plan says they are independent): no barrier between them, and the next row's blocks are
// numbered on from this row's over the grid, so that real blocks left idle by the first launch
// start the second. T: the parameters' type; U: the targets' (long long labels, or T).
template <typename T, typename U>
__global__ void __launch_bounds__(256, XPNET_PERSISTENT_BLOCKS_PER_SM)
    xpnet_persistent_step(const long long* __restrict__ phases, const int n_phases, const int steps,
                          int* __restrict__ barrier) {
    XPNET_BLOCK_SHARED(xpnet_persistent_shared<T>, sh);
    for (int step = 0; step < steps; ++step) {
        unsigned before = 0;  // blocks of the earlier launches in this phase, modulo the grid
        for (int p = 0; p < n_phases; ++p) {
            const long long* d = phases + (long long)p * XPNET_PHASE_SLOTS;
            const unsigned gx = (unsigned)d[1], gy = (unsigned)d[2], gz = (unsigned)d[3];
            const unsigned blocks = gx * gy * gz;
            // this real block takes the launch's blocks v with (before + v) % gridDim.x == blockIdx.x
            for (unsigned v = (blockIdx.x + gridDim.x - before) % gridDim.x; v < blocks; v += gridDim.x) {
                __syncthreads();  // the previous block's shared memory is free
                xpnet_persistent_phase<T, U>(d, {v % gx, (v / gx) % gy, v / (gx * gy), gx, gy, gz}, sh);
            }
            if (d[XPNET_PHASE_WITH_NEXT] != 0 && p + 1 < n_phases) {
                before = (before + blocks) % gridDim.x;
                continue;
            }
            before = 0;
            if (p + 1 < n_phases || step + 1 < steps) xpnet_grid_barrier(barrier);
        }
    }
}

#ifdef XPNET_NVCC_CHECK
template __global__ void xpnet_persistent_step<float, long long>(const long long*, int, int, int*);
template __global__ void xpnet_persistent_step<float, float>(const long long*, int, int, int*);
template __global__ void xpnet_persistent_step<double, long long>(const long long*, int, int, int*);
template __global__ void xpnet_persistent_step<double, double>(const long long*, int, int, int*);
#endif
