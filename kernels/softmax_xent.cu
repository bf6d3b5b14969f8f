// softmax_xent.cu -- row-wise softmax cross-entropy, numerically stable, loss and logits gradient at once.
//
// logits (B, K) float32, labels (B,) int64. For row b with label t = labels[b]:
//   m = max_k z_k,  s = sum_k exp(z_k - m),  loss[b] = log(s) - (z_t - m)  (log(s) + m - z_t loses log(s)
//   beside a max of 1e30)
//   grad[b, k] = (exp(z_k - m) / s - [k == t]) * scale
// A label outside [0, K) marks an ignored row: loss 0 and a zero gradient row.
// With do_grad = 0 only the losses are written (grad may then be any valid pointer).
//
// Launch: one block per row (grid = B), blockDim.x a multiple of 32 up to 1024 (the loader picks the
// smallest multiple of 32 covering K, at most 256). Three passes over the row (max, sum, write), each a
// strided loop followed by block_reduce (warp shuffles + one shared slot per warp).
// Traffic: reads the logits 3 times (from cache after the first for rows that fit in L1/L2), writes B*K
// gradient floats and B losses: ~8BK bytes, against ~7 passes of the unfused
// max / subtract / exp / sum / log / divide / one-hot sequence.
// NumPy reference: minifb.kernel_refs.softmax_xent_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void __launch_bounds__(1024) softmax_xent(const float* __restrict__ logits,
                                                                const long long* __restrict__ labels,
                                                                float* __restrict__ loss, float* __restrict__ grad,
                                                                int K, float scale, int do_grad) {
    const long long b = blockIdx.x;
    const float* z = logits + b * K;
    const long long t = labels[b];
    const bool ignored = t < 0 || t >= K;

    float m = neg_inf();
    for (int k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, z[k]);
    m = block_reduce_max(m);

    float s = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) s += expf(z[k] - m);
    s = block_reduce_sum(s);

    // log(s) - (z[t] - m), not log(s) + m - z[t]: beside a max of 1e30 the sum would drop log(s)
    if (threadIdx.x == 0) loss[b] = ignored ? 0.0f : logf(s) - (z[t] - m);
    if (do_grad) {
        float* gr = grad + b * K;
        const float inv = 1.0f / s;
        for (int k = threadIdx.x; k < K; k += blockDim.x) {
            const float p = expf(z[k] - m) * inv;
            gr[k] = ignored ? 0.0f : (p - (k == t ? 1.0f : 0.0f)) * scale;
        }
    }
}
