// Activations, forward and backward, one thread per element.
// NumPy reference: scratchvae.activations (the functions sigmoid and softplus, and the
// forward and backward of the layers Tanh, ReLU, Sigmoid and Softplus).
//
//     tanh:      y = tanh(a)                     da = dy (1 - y^2)
//     relu:      y = max(a, 0)                   da = dy [y > 0]      (0 at the kink a = 0)
//     sigmoid:   y = (1 + tanh(a / 2)) / 2       da = dy y (1 - y)
//     softplus:  y = log(1 + exp(a))             da = dy sigmoid(a)
//
// The backward of tanh, relu and sigmoid reads the output y the forward kept, that of
// softplus the input a (as the layers' `cache`). Each backward is one kernel where the
// NumPy expression runs two or three (dy * (1 - y * y) is three array operations).
#include "common.cuh"

template <typename T>
__global__ void tanh_forward(const T* a, long long ld_a, T* y, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    y[i] = tanh(at(a, ld_a, i, cols));
}

template <typename T>
__global__ void relu_forward(const T* a, long long ld_a, T* y, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    T v = at(a, ld_a, i, cols);
    y[i] = v < T(0) ? T(0) : v;   // max(v, 0); NaN stays NaN, as with numpy.maximum
}

template <typename T>
__global__ void sigmoid_forward(const T* a, long long ld_a, T* y, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    y[i] = sigmoid(at(a, ld_a, i, cols));
}

template <typename T>
__global__ void softplus_forward(const T* a, long long ld_a, T* y, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    y[i] = softplus(at(a, ld_a, i, cols));
}

template <typename T>
__global__ void tanh_backward(const T* dy, long long ld_dy, const T* y, long long ld_y,
                              T* da, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    T v = at(y, ld_y, i, cols);
    da[i] = at(dy, ld_dy, i, cols) * (T(1) - v * v);
}

template <typename T>
__global__ void relu_backward(const T* dy, long long ld_dy, const T* y, long long ld_y,
                              T* da, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    da[i] = at(dy, ld_dy, i, cols) * T(at(y, ld_y, i, cols) > T(0));   // a product, as in NumPy: NaN * 0 is NaN
}

template <typename T>
__global__ void sigmoid_backward(const T* dy, long long ld_dy, const T* y, long long ld_y,
                                 T* da, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    T v = at(y, ld_y, i, cols);
    da[i] = at(dy, ld_dy, i, cols) * v * (T(1) - v);
}

template <typename T>
__global__ void softplus_backward(const T* dy, long long ld_dy, const T* a, long long ld_a,
                                  T* da, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    da[i] = at(dy, ld_dy, i, cols) * sigmoid(at(a, ld_a, i, cols));
}
