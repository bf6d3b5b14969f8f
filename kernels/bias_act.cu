// bias_act.cu -- the Dense / Conv epilogue: y = act(x + bias[channel]), and its backward.
//
// Layout: x, y, g, dx are contiguous float32 arrays seen as (outer, C, inner); the channel of flat index i
// is (i / inner) % C. Dense output (rows, cols): outer = rows, C = cols, inner = 1. Conv output NCHW:
// outer = N, C = channels, inner = H * W. No bias: C = 1, inner = 1 and bias = [0].
// act: 0 identity, 1 relu, 2 sigmoid, 3 tanh (see common.h).
//
// Kernels
//   bias_act_fwd(x, bias, y, n, C, inner, act)
//       1-D grid-stride loop, any grid (the loader uses 256 threads, up to 8192 blocks).
//       Traffic: reads x (4n bytes) and bias (cached), writes y (4n): 8n bytes, against 16n for the unfused
//       "t = x + bias; y = act(t)" (one more write and read of t).
//   bias_act_bwd_dx(g, y, dx, n, act)
//       dx = g * act'(y) from the saved output; grid-stride. Traffic 12n bytes.
//   bias_act_bwd(g, y, dx, dbias, outer, C, inner, act)
//       dx as above AND dbias[c] = sum over outer, inner of dx in the same pass: one block per channel
//       (grid = C, block = 256, a multiple of 32), shared-memory/shuffle reduction, no atomics.
//       Traffic 12n + 4C bytes, against 12n + 4n for the unfused dx then dx.sum(axis=(0, 2)).
//       For Dense (inner = 1) the threads of a block read with stride C (uncoalesced); fine for the sizes
//       minifb trains, a tiled variant would be the next step.
// NumPy reference: minifb.kernel_refs.bias_act_ref / bias_act_backward_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void bias_act_fwd(const float* __restrict__ x, const float* __restrict__ bias,
                                        float* __restrict__ y, long long n, int C, int inner, int act) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int c = (int)((i / inner) % C);
        y[i] = act_apply(act, x[i] + bias[c]);
    }
}

extern "C" __global__ void bias_act_bwd_dx(const float* __restrict__ g, const float* __restrict__ y,
                                           float* __restrict__ dx, long long n, int act) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dx[i] = g[i] * act_grad_from_output(act, y[i]);
    }
}

extern "C" __global__ void __launch_bounds__(256) bias_act_bwd(const float* __restrict__ g,
                                                               const float* __restrict__ y,
                                                               float* __restrict__ dx, float* __restrict__ dbias,
                                                               int outer, int C, int inner, int act) {
    act_backward_channel(g, y, dx, dbias, outer, C, inner, act);
}
