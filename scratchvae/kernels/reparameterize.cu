// The reparameterization trick, forward and backward.
// NumPy reference: scratchvae.distributions.reparameterize and reparameterize_backward.
//
//     z = mu + sigma * eps,   sigma = exp(logvar / 2),   eps ~ N(0, I)
//
// eps holds S samples for each of the B rows of mu and logvar: S * B rows of Z values,
// sample s of row b at row s * B + b. Row b of mu and logvar serves all S of them.
#include "common.cuh"

// One thread per element of z (S * B rows of `cols` = Z values).
template <typename T>
__global__ void reparameterize_forward(const T* mu, long long ld_mu,
                                       const T* logvar, long long ld_logvar,
                                       const T* eps, long long ld_eps,
                                       T* z, long long B, long long rows, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    long long r = i / cols, c = i % cols;
    long long b = r % B;                                  // the row of mu for sample row r
    T sigma = exp(T(0.5) * logvar[b * ld_logvar + c]);
    z[i] = mu[b * ld_mu + c] + sigma * eps[r * ld_eps + c];
}

// The chain rule through z_s = mu + exp(logvar / 2) * eps_s, summed over the S samples:
//
//     dmu     = sum_s dz_s
//     dlogvar = sum_s dz_s * eps_s * exp(logvar / 2) / 2
//
// One thread per element of mu (B rows of `cols` values); each loops over the S samples,
// so the sum over samples needs no second kernel.
template <typename T>
__global__ void reparameterize_backward(const T* dz, long long ld_dz,
                                        const T* logvar, long long ld_logvar,
                                        const T* eps, long long ld_eps,
                                        T* dmu, T* dlogvar,
                                        long long S, long long B, long long cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= B * cols) return;
    long long b = i / cols, c = i % cols;
    T half_sigma = T(0.5) * exp(T(0.5) * logvar[b * ld_logvar + c]);
    T sum_dz = T(0), sum_dlogvar = T(0);
    for (long long s = 0; s < S; ++s) {
        long long r = s * B + b;
        T g = dz[r * ld_dz + c];
        sum_dz += g;
        sum_dlogvar += g * eps[r * ld_eps + c] * half_sigma;
    }
    dmu[i] = sum_dz;
    dlogvar[i] = sum_dlogvar;
}
