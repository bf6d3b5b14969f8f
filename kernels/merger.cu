// merger.cu -- the feedback path's epilogue fused with the combine: y = x + act(fb + bias[channel]).
//
// Layout as in bias_act.cu: contiguous float32 (outer, C, inner), channel of flat index i is (i/inner) % C;
// no bias: C = 1, inner = 1, bias = [0]. act: 0 identity, 1 relu, 2 sigmoid, 3 tanh.
//
// Kernels
//   merger_fwd(x, fb, bias, y, a, n, C, inner, act)
//       a = act(fb + bias[c]) (saved for the backward) and y = x + a; 1-D grid-stride loop.
//       Traffic: reads x, fb; writes y, a: 16n bytes (12n when the caller does not keep a, but a is
//       needed by the backward). Unfused: t = fb + b (8n+4n), a = act(t) (8n), y = x + a (12n): 32n.
//   merger_bwd(g, a, dfb, dbias, outer, C, inner, act)
//       dfb = g * act'(a), dbias[c] = sum over outer, inner of dfb. One block per channel (grid = C,
//       block = 256), shuffle + shared-memory reduction, no atomics. dx = g needs no kernel.
//       Traffic 12n + 4C bytes.
// NumPy reference: minifb.kernel_refs.merger_forward_ref / merger_backward_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void merger_fwd(const float* __restrict__ x, const float* __restrict__ fb,
                                      const float* __restrict__ bias, float* __restrict__ y,
                                      float* __restrict__ a, long long n, int C, int inner, int act) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int c = (int)((i / inner) % C);
        const float ai = act_apply(act, fb[i] + bias[c]);
        a[i] = ai;
        y[i] = x[i] + ai;
    }
}

extern "C" __global__ void __launch_bounds__(256) merger_bwd(const float* __restrict__ g,
                                                             const float* __restrict__ a,
                                                             float* __restrict__ dfb, float* __restrict__ dbias,
                                                             int outer, int C, int inner, int act) {
    act_backward_channel(g, a, dfb, dbias, outer, C, inner, act);
}
