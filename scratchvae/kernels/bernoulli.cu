// The Bernoulli log-likelihood from logits l (p = sigmoid(l)) and its gradient.
// NumPy reference: scratchvae.distributions.bernoulli_log_likelihood and
// bernoulli_log_likelihood_grad.
//
//     log p(x | l) = sum_d [x_d log p_d + (1 - x_d) log(1 - p_d)] = sum_d [x_d l_d - softplus(l_d)]
//     d/dl_d       = x_d - sigmoid(l_d)
//
// The softplus form never takes the log of a probability that rounded to 0 or 1.
#include "common.cuh"

// One block per row (a row is one image: D = 784 pixels for MNIST); thread 0 writes the sum.
template <typename T>
__global__ void bernoulli_log_likelihood_rows(const T* x, long long ld_x,
                                              const T* logits, long long ld_logits,
                                              T* logp, long long cols) {
    long long r = blockIdx.x;
    T sum = T(0);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        T l = logits[r * ld_logits + c];
        sum += x[r * ld_x + c] * l - softplus(l);
    }
    T total = block_sum(sum);
    if (threadIdx.x == 0) logp[r] = total;
}

// One thread per element.
template <typename T>
__global__ void bernoulli_log_likelihood_grad(const T* x, long long ld_x,
                                              const T* logits, long long ld_logits,
                                              T* dlogits, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols, c = i % cols;
    dlogits[i] = x[r * ld_x + c] - sigmoid(logits[r * ld_logits + c]);
}
