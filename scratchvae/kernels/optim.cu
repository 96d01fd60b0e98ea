// Optimizer updates, fused: one thread per parameter reads g and the state once and
// writes the state and the parameter once, where the NumPy version makes about ten
// passes over the arrays. Everything is updated in place.
// NumPy reference: scratchvae.optim.Adam.update and scratchvae.optim.Adagrad.update.

// Adam (Kingma & Ba 2015), with the bias corrections folded into lr_t and eps_t
// (see scratchvae.optim.Adam), and the moments written as NumPy's fast form writes them:
//
//     m = m + (1 - b1) (g - m)       (= b1 m + (1 - b1) g)
//     v = v + (1 - b2) (g^2 - v)     (= b2 v + (1 - b2) g^2)
//     theta -= lr_t m / (sqrt(v) + eps_t)
//
// so that both round alike. 1 - b1 and 1 - b2 arrive computed on the host in double,
// then rounded to T, exactly as NumPy rounds the Python float (1 - b1) when it
// multiplies a float32 array.
template <typename T>
__global__ void adam_update(T* theta, const T* g, T* m, T* v,
                            T one_minus_b1, T one_minus_b2,
                            T lr_t, T eps_t, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    T gi = g[i];
    T mi = m[i] + (gi - m[i]) * one_minus_b1;
    T vi = v[i] + (gi * gi - v[i]) * one_minus_b2;
    m[i] = mi;
    v[i] = vi;
    theta[i] -= mi / (sqrt(vi) + eps_t) * lr_t;
}

// Adagrad (Duchi et al. 2011):
//
//     h = h + g^2
//     theta -= lr g / (sqrt(h) + eps)
template <typename T>
__global__ void adagrad_update(T* theta, const T* g, T* h, T lr, T eps, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    T gi = g[i];
    T hi = h[i] + gi * gi;
    h[i] = hi;
    theta[i] -= gi / (sqrt(hi) + eps) * lr;
}
