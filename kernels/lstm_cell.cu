// lstm_cell.cu -- one LSTM step from the two gate pre-activation matrices (PyTorch's equations and order).
//
//   gi = x @ W_ih.T + b_ih, gh = h @ W_hh.T + b_hh, both (B, 4H) with gate blocks [i | f | g | o]:
//   i = sigmoid(gi_i + gh_i), f = sigmoid(..f), g = tanh(..g), o = sigmoid(..o)
//   c' = f * c + i * g,  h' = o * tanh(c')
// The two matrix products stay in cuBLAS / NumPy; these kernels fuse everything after them.
//
// Kernels (thread per (b, j), j < H; 1-D grid-stride loop over B*H, block 256)
//   lstm_cell_fwd(gi, gh, c, ldc, hc, gates, B, H)
//       c is read as rows of stride ldc (>= H), so the previous step's c' can be passed as the view it is
//       (the right half of that step's hc) without a copy. hc (B, 2H) receives [h' | c'], the op's one
//       output; gates (B, 4H) receives the activated [i | f | g | o], saved for the backward.
//       Traffic: reads 2*4BH + BH, writes 2BH + 4BH floats = 15BH * 4 bytes; the unfused sequence
//       (add, 4 slices, 3 sigmoids, 2 tanh, 3 muls, add) moves about 3x that.
//   lstm_cell_bwd(dhc, gates, c, ldc, hc, dgates, dc_prev, B, H)
//       dhc (B, 2H) is the gradient of hc = [h' | c']; hc is the forward's output (c' is read from it).
//       dgates (B, 4H) is the gradient of the pre-activation, which is both d(gi) and d(gh); dc_prev =
//       dc_total * f is the pointwise part of the gradient of c (dh_prev comes from dgates @ W_hh
//       outside). Traffic: reads 2BH + 4BH + 2BH, writes 5BH.
// NumPy reference: minifb.kernel_refs.lstm_cell_forward_ref / lstm_cell_backward_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void lstm_cell_fwd(const float* __restrict__ gi, const float* __restrict__ gh,
                                         const float* __restrict__ c, int ldc, float* __restrict__ hc,
                                         float* __restrict__ gates, int B, int H) {
    const long long n = (long long)B * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
        const long long b = t / H;
        const long long j = t - b * H;
        const long long row = b * 4 * H;
        const long long out = b * 2 * H + j;
        const float i = sigmoid_f(gi[row + j] + gh[row + j]);
        const float f = sigmoid_f(gi[row + H + j] + gh[row + H + j]);
        const float g = tanhf(gi[row + 2 * H + j] + gh[row + 2 * H + j]);
        const float o = sigmoid_f(gi[row + 3 * H + j] + gh[row + 3 * H + j]);
        const float cn = f * c[b * ldc + j] + i * g;
        hc[out] = o * tanhf(cn);
        hc[out + H] = cn;
        gates[row + j] = i;
        gates[row + H + j] = f;
        gates[row + 2 * H + j] = g;
        gates[row + 3 * H + j] = o;
    }
}

extern "C" __global__ void lstm_cell_bwd(const float* __restrict__ dhc, const float* __restrict__ gates,
                                         const float* __restrict__ c, int ldc, const float* __restrict__ hc,
                                         float* __restrict__ dgates, float* __restrict__ dc_prev, int B, int H) {
    const long long n = (long long)B * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
        const long long b = t / H;
        const long long j = t - b * H;
        const long long row = b * 4 * H;
        const long long out = b * 2 * H + j;
        const float i = gates[row + j];
        const float f = gates[row + H + j];
        const float g = gates[row + 2 * H + j];
        const float o = gates[row + 3 * H + j];
        const float tc = tanhf(hc[out + H]);
        const float dht = dhc[out];
        const float dct = dhc[out + H] + dht * o * (1.0f - tc * tc);
        dgates[row + j] = dct * g * i * (1.0f - i);
        dgates[row + H + j] = dct * c[b * ldc + j] * f * (1.0f - f);
        dgates[row + 2 * H + j] = dct * i * (1.0f - g * g);
        dgates[row + 3 * H + j] = dht * tc * o * (1.0f - o);
        dc_prev[t] = dct * f;
    }
}
