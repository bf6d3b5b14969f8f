// maxpool.cu -- 2-D max pooling with argmax, and its backward as a gather.
//
// x: (N, C, H, W) float32; window kh x kw, stride (sh, sw), padding (ph, pw) counted as -inf;
// OH = (H + 2 ph - kh) / sh + 1 (PyTorch's formula, floor mode), likewise OW.
//   y[n, c, oh, ow]   = max over the window of x
//   arg[n, c, oh, ow] = h * W + w of the first maximum inside the plane (int32); a NaN wins (first NaN).
//
// Kernels (1-D grid-stride loops, block 256)
//   maxpool_fwd(x, y, arg, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)
//       thread per output element. Traffic: reads x (each pixel ~kh*kw/(sh*sw) times, cached), writes y
//       and arg (8 bytes per output).
//   maxpool_bwd(g, arg, dx, N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)
//       thread per input element: it visits the outputs whose window covers it and adds g where the
//       argmax points at it. Windows overlap when stride < kernel, so a scatter would need atomics; the
//       gather needs none. Traffic: writes dx once, reads g and arg ~kh*kw/(sh*sw) times (cached).
// NumPy reference: minifb.kernel_refs.maxpool_forward_ref / maxpool_backward_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void maxpool_fwd(const float* __restrict__ x, float* __restrict__ y, int* __restrict__ arg,
                                       int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw,
                                       int OH, int OW) {
    const long long total = (long long)N * C * OH * OW;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int ow = (int)(e % OW);
        const int oh = (int)((e / OW) % OH);
        const long long plane = e / ((long long)OW * OH);   // n * C + c
        const float* xp = x + plane * H * W;
        float best = neg_inf();
        int best_at = -1;
        for (int i = 0; i < kh; ++i) {
            const int hh = oh * sh - ph + i;
            if (hh < 0 || hh >= H) continue;
            for (int j = 0; j < kw; ++j) {
                const int ww = ow * sw - pw + j;
                if (ww < 0 || ww >= W) continue;
                const float v = xp[hh * W + ww];
                const bool v_nan = v != v, best_nan = best != best;
                if (best_at < 0 || (!best_nan && (v > best || v_nan))) {
                    best = v;
                    best_at = hh * W + ww;
                }
            }
        }
        y[e] = best;
        arg[e] = best_at;
    }
}

extern "C" __global__ void maxpool_bwd(const float* __restrict__ g, const int* __restrict__ arg,
                                       float* __restrict__ dx, int N, int C, int H, int W, int kh, int kw, int sh,
                                       int sw, int ph, int pw, int OH, int OW) {
    const long long total = (long long)N * C * H * W;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int ww = (int)(e % W);
        const int hh = (int)((e / W) % H);
        const long long plane = e / ((long long)W * H);
        const int here = hh * W + ww;
        // outputs whose window covers hh: oh*sh - ph <= hh <= oh*sh - ph + kh - 1
        const int oh_lo_num = hh + ph - kh + 1;
        const int oh_lo = oh_lo_num <= 0 ? 0 : (oh_lo_num + sh - 1) / sh;
        const int oh_hi_c = (hh + ph) / sh;
        const int oh_hi = oh_hi_c < OH - 1 ? oh_hi_c : OH - 1;
        const int ow_lo_num = ww + pw - kw + 1;
        const int ow_lo = ow_lo_num <= 0 ? 0 : (ow_lo_num + sw - 1) / sw;
        const int ow_hi_c = (ww + pw) / sw;
        const int ow_hi = ow_hi_c < OW - 1 ? ow_hi_c : OW - 1;
        float acc = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                const long long o = (plane * OH + oh) * OW + ow;
                if (arg[o] == here) acc += g[o];
            }
        }
        dx[e] = acc;
    }
}
