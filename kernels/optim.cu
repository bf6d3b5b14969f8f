// optim.cu -- optimiser updates over one flat float32 parameter buffer, one launch each (PyTorch's rules).
//
// p, g and the state buffers are contiguous float32 of n elements (one tensor, or all parameters packed
// into one buffer). 1-D grid-stride loops, block 256.
//
//   sgd_update(p, g, buf, n, lr, momentum, one_minus_dampening, weight_decay, nesterov, first_step)
//       d = g + weight_decay * p
//       if momentum != 0: buf = d on the first step, else buf = momentum * buf + (1 - dampening) * d;
//                         d = d + momentum * buf if nesterov else buf
//       p -= lr * d
//       Traffic: reads p, g, buf; writes p, buf: 20n bytes (the unfused NumPy sequence moves ~3x that).
//   adam_update(p, g, m, v, n, lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay,
//               bias_correction1, bias_correction2)
//       d = g + weight_decay * p;  m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d^2
//       p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)     with bc_k = 1 - beta_k^step (passed in)
//       Traffic: reads p, g, m, v; writes p, m, v: 28n bytes.
// 1 - dampening, 1 - beta_k and bc_k are computed by the host in double precision and passed in: from a
// float beta close to 1 (0.99999999 rounds to 1.0f) 1 - beta would be 0 here, and v would never grow.
// NumPy reference: minifb.kernel_refs.sgd_update_ref / adam_update_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void sgd_update(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ buf,
                                      long long n, float lr, float momentum, float one_minus_dampening,
                                      float weight_decay, int nesterov, int first_step) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float d = g[i];
        if (weight_decay != 0.0f) d += weight_decay * p[i];
        if (momentum != 0.0f) {
            const float b = first_step ? d : momentum * buf[i] + one_minus_dampening * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

extern "C" __global__ void adam_update(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                       float* __restrict__ v, long long n, float lr, float beta1, float beta2,
                                       float one_minus_beta1, float one_minus_beta2, float eps,
                                       float weight_decay, float bias_correction1, float bias_correction2) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    const float step_size = lr / bias_correction1;
    const float bc2_sqrt = sqrtf(bias_correction2);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float d = g[i];
        if (weight_decay != 0.0f) d += weight_decay * p[i];
        const float mi = beta1 * m[i] + one_minus_beta1 * d;
        const float vi = beta2 * v[i] + one_minus_beta2 * d * d;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
