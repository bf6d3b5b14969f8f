// gru_cell.cu -- one GRU step from the two gate pre-activation matrices (PyTorch's equations and order).
//
//   gi = x @ W_ih.T + b_ih, gh = h @ W_hh.T + b_hh, both (B, 3H) with gate blocks [r | z | n]:
//   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n)
//   h' = (1 - z) * n + z * h
//
// Kernels (thread per (b, j), j < H; 1-D grid-stride loop over B*H, block 256)
//   gru_cell_fwd(gi, gh, h, h_out, saved, B, H)
//       saved (B, 4H) = [r | z | n | gh_n], all the backward needs besides h.
//       Traffic: reads 3BH + 3BH + BH, writes BH + 4BH floats.
//   gru_cell_bwd(dh, saved, h, dgi, dgh, dh_prev, B, H)
//       dgi, dgh (B, 3H): gradients of gi and gh; dh_prev (B, H) = dh * z, the pointwise part of the
//       gradient of h (the part through gh, dgh @ W_hh, is a matrix product outside).
//       Traffic: reads 5BH, writes 7BH floats.
// NumPy reference: minifb.kernel_refs.gru_cell_forward_ref / gru_cell_backward_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void gru_cell_fwd(const float* __restrict__ gi, const float* __restrict__ gh,
                                        const float* __restrict__ h, float* __restrict__ h_out,
                                        float* __restrict__ saved, int B, int H) {
    const long long n = (long long)B * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
        const long long b = t / H;
        const long long j = t - b * H;
        const long long row3 = b * 3 * H, row4 = b * 4 * H;
        const float r = sigmoid_f(gi[row3 + j] + gh[row3 + j]);
        const float z = sigmoid_f(gi[row3 + H + j] + gh[row3 + H + j]);
        const float ghn = gh[row3 + 2 * H + j];
        const float nn = tanhf(gi[row3 + 2 * H + j] + r * ghn);
        h_out[t] = (1.0f - z) * nn + z * h[t];
        saved[row4 + j] = r;
        saved[row4 + H + j] = z;
        saved[row4 + 2 * H + j] = nn;
        saved[row4 + 3 * H + j] = ghn;
    }
}

extern "C" __global__ void gru_cell_bwd(const float* __restrict__ dh, const float* __restrict__ saved,
                                        const float* __restrict__ h, float* __restrict__ dgi,
                                        float* __restrict__ dgh, float* __restrict__ dh_prev, int B, int H) {
    const long long n = (long long)B * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
        const long long b = t / H;
        const long long j = t - b * H;
        const long long row3 = b * 3 * H, row4 = b * 4 * H;
        const float r = saved[row4 + j];
        const float z = saved[row4 + H + j];
        const float nn = saved[row4 + 2 * H + j];
        const float ghn = saved[row4 + 3 * H + j];
        const float d = dh[t];
        const float dn_pre = d * (1.0f - z) * (1.0f - nn * nn);
        const float dz_pre = d * (h[t] - nn) * z * (1.0f - z);
        const float dr_pre = dn_pre * ghn * r * (1.0f - r);
        dgi[row3 + j] = dr_pre;
        dgi[row3 + H + j] = dz_pre;
        dgi[row3 + 2 * H + j] = dn_pre;
        dgh[row3 + j] = dr_pre;
        dgh[row3 + H + j] = dz_pre;
        dgh[row3 + 2 * H + j] = dn_pre * r;
        dh_prev[t] = d * z;
    }
}
