// common.cuh: what every scratchvae kernel shares.
//
// Layout. A kernel sees each array as a matrix of `rows` x `cols` values in row-major
// order; `cols` is the last axis (the event axis of scratchvae/distributions.py, the
// features of a layer). An input may be a column slice of a wider matrix, like
// mu = h[:, :Z] of the encoder output h (B x 2Z): its rows then lie `ld` values apart
// (the "leading dimension", as in BLAS), and element (r, c) is a[r * ld + c]. Reading
// the slice in place saves a copy kernel. Outputs are new and contiguous (ld = cols).
//
// Threads. Elementwise kernels run one thread per element: thread i of the whole
// grid handles element i = r * cols + c. Row kernels (the sums over the last axis)
// run one block of ROW_THREADS threads per row (see block_sum).
//
// Precision. Every kernel is a template on T = float or double. The Python wrappers
// instantiate both and launch the one matching the arrays' dtype. Arithmetic stays in
// T and follows the NumPy reference's formula step by step, so the two agree to
// rounding (a few units in the last place; float sums also differ in their order).
#pragma once

// Element i = r * cols + c of a rows x cols input whose rows lie ld apart.
template <typename T>
__device__ T at(const T* a, long long ld, long long i, long long cols) {
    return a[(i / cols) * ld + i % cols];
}

// sigmoid(a) = 1 / (1 + exp(-a)) = (1 + tanh(a / 2)) / 2: the tanh form never overflows,
// and it is the formula of scratchvae.activations.sigmoid, so both round alike.
template <typename T>
__device__ T sigmoid(T a) {
    return T(0.5) * (T(1) + tanh(T(0.5) * a));
}

// softplus(a) = log(1 + exp(a)) = max(a, 0) + log(1 + exp(-|a|)): exp never sees a
// positive argument, so nothing overflows (scratchvae.activations.softplus).
template <typename T>
__device__ T softplus(T a) {
    T positive_part = a < T(0) ? T(0) : a;   // max(a, 0); NaN stays NaN
    return positive_part + log1p(exp(-fabs(a)));
}

// Threads per block of the row kernels. The Python side launches with this many
// (ROW_THREADS in scratchvae/kernels/launch.py, checked by tests/test_kernels.py).
#define ROW_THREADS 256

// The sum of `value` over the ROW_THREADS threads of the block, returned to every thread.
// A tree in shared memory: at each step the first half of the threads adds the value of
// its partner in the second half, so 256 values take log2(256) = 8 steps. Every thread
// of the block must call it (it contains __syncthreads), and at most once per kernel.
template <typename T>
__device__ T block_sum(T value) {
    __shared__ T partial[ROW_THREADS];
    partial[threadIdx.x] = value;
    __syncthreads();
    for (unsigned int stride = ROW_THREADS / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            partial[threadIdx.x] += partial[threadIdx.x + stride];
        }
        __syncthreads();
    }
    return partial[0];
}
