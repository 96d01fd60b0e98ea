// The closed-form KL divergence from q(z|x) = N(mu, diag(exp(logvar))) to the prior
// N(0, I), and its gradient (Kingma & Welling 2013, Appendix B).
// NumPy reference: scratchvae.distributions.kl_standard_normal and kl_standard_normal_grad.
//
//     kl = 1/2 sum_j [mu_j^2 + exp(logvar_j) - 1 - logvar_j]
//     dkl/dmu_j = mu_j,   dkl/dlogvar_j = (exp(logvar_j) - 1) / 2
#include "common.cuh"

// One block per row: its threads add up the row's terms (block_sum), thread 0 writes
// the row's KL. The sum over the last axis happens here, in the same kernel as the
// elementwise terms, so no (rows x cols) temporary is ever written.
template <typename T>
__global__ void kl_standard_normal_rows(const T* mu, long long ld_mu,
                                        const T* logvar, long long ld_logvar,
                                        T* kl, long long cols) {
    long long r = blockIdx.x;
    T sum = T(0);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        T m = mu[r * ld_mu + c], lv = logvar[r * ld_logvar + c];
        sum += m * m + exp(lv) - T(1) - lv;
    }
    T total = block_sum(sum);
    if (threadIdx.x == 0) kl[r] = T(0.5) * total;
}

// One thread per element; both gradients in one pass (dmu is a copy of mu).
template <typename T>
__global__ void kl_standard_normal_grad(const T* mu, long long ld_mu,
                                        const T* logvar, long long ld_logvar,
                                        T* dmu, T* dlogvar, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols, c = i % cols;
    dmu[i] = mu[r * ld_mu + c];
    dlogvar[i] = T(0.5) * (exp(logvar[r * ld_logvar + c]) - T(1));
}
