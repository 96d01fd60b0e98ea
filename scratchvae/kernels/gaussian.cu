// The log-density of a diagonal Gaussian N(mu, diag(exp(logvar))) and its gradients.
// NumPy reference: scratchvae.distributions.gaussian_log_density and
// gaussian_log_density_grad.
//
//     log N(x; mu, diag(exp(logvar))) = -1/2 sum_d [log 2pi + logvar_d + (x_d - mu_d)^2 exp(-logvar_d)]
//     d/dmu     = (x - mu) exp(-logvar)
//     d/dlogvar = 1/2 [(x - mu)^2 exp(-logvar) - 1]
//     d/dx      = -(x - mu) exp(-logvar)
#include "common.cuh"

#define LOG_2PI 1.8378770664093453   // log(2 pi), as scratchvae.distributions.LOG_2PI

// One block per row; thread 0 writes the row's log-density.
template <typename T>
__global__ void gaussian_log_density_rows(const T* x, long long ld_x,
                                          const T* mu, long long ld_mu,
                                          const T* logvar, long long ld_logvar,
                                          T* logp, long long cols) {
    long long r = blockIdx.x;
    T sum = T(0);
    for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
        T lv = logvar[r * ld_logvar + c];
        T diff = x[r * ld_x + c] - mu[r * ld_mu + c];
        sum += T(LOG_2PI) + lv + diff * diff * exp(-lv);
    }
    T total = block_sum(sum);
    if (threadIdx.x == 0) logp[r] = T(-0.5) * total;
}

// One thread per element, all three gradients at once.
template <typename T>
__global__ void gaussian_log_density_grad(const T* x, long long ld_x,
                                          const T* mu, long long ld_mu,
                                          const T* logvar, long long ld_logvar,
                                          T* dmu, T* dlogvar, T* dx,
                                          long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols, c = i % cols;
    T precision = exp(-logvar[r * ld_logvar + c]);
    T diff = x[r * ld_x + c] - mu[r * ld_mu + c];
    T g = diff * precision;
    dmu[i] = g;
    dlogvar[i] = T(0.5) * (diff * g - T(1));
    dx[i] = -g;
}
