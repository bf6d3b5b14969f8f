// common.h -- small device helpers shared by minifb's kernels (included, never launched).
//
// * Activation codes, the same numbers as minifb.kernels.ACTIVATIONS:
//     0 identity, 1 relu, 2 sigmoid, 3 tanh.
//   act_apply(a, v) computes act(v); act_grad_from_output(a, y) computes act'(x) from y = act(x), which
//   is all the backward kernels need (relu: y > 0, sigmoid: y (1 - y), tanh: 1 - y^2).
// * block_reduce_sum / block_reduce_max: a whole-block reduction, warp shuffles then one shared slot per
//   warp. Every thread of the block must call it (it contains __syncthreads) and blockDim.x must be a
//   multiple of 32 (at most 1024); every thread gets the result.
// * neg_inf(): -infinity without <math.h>'s INFINITY, which NVRTC does not have.
//
// The file compiles under nvcc, NVRTC (no host headers) and g++ with cuda_emu.h.
#pragma once

#ifndef __CUDACC__
#include "cuda_emu.h"
#endif

#define MINIFB_ACT_IDENTITY 0
#define MINIFB_ACT_RELU 1
#define MINIFB_ACT_SIGMOID 2
#define MINIFB_ACT_TANH 3

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

__device__ __forceinline__ float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

__device__ __forceinline__ float act_apply(int act, float v) {
    switch (act) {
        case MINIFB_ACT_RELU: return v < 0.0f ? 0.0f : v;  // keeps a NaN, as numpy.maximum(v, 0) does
        case MINIFB_ACT_SIGMOID: return sigmoid_f(v);
        case MINIFB_ACT_TANH: return tanhf(v);
        default: return v;
    }
}

__device__ __forceinline__ float act_grad_from_output(int act, float y) {
    switch (act) {
        case MINIFB_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
        case MINIFB_ACT_SIGMOID: return y * (1.0f - y);
        case MINIFB_ACT_TANH: return 1.0f - y * y;
        default: return 1.0f;
    }
}

// Sum across one warp; every lane gets the total.
__device__ __forceinline__ float warp_reduce_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_reduce_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Whole-block sum (op 0) or max (op 1). The leading __syncthreads protects `partial` from a previous call.
__device__ __forceinline__ float block_reduce(float v, int op) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = (blockDim.x + 31) >> 5;
    v = op == 0 ? warp_reduce_sum(v) : warp_reduce_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    const float identity = op == 0 ? 0.0f : neg_inf();
    float w = lane < nwarps ? partial[lane] : identity;
    return op == 0 ? warp_reduce_sum(w) : warp_reduce_max(w);
}

__device__ __forceinline__ float block_reduce_sum(float v) { return block_reduce(v, 0); }
__device__ __forceinline__ float block_reduce_max(float v) { return block_reduce(v, 1); }

// One block per channel c of an (outer, C, inner) array: dx = g * act'(y) for the channel's elements, and
// dbias[c] = sum of them. Shared by bias_act_bwd and merger_bwd.
__device__ __forceinline__ void act_backward_channel(const float* __restrict__ g, const float* __restrict__ y,
                                                     float* __restrict__ dx, float* __restrict__ dbias,
                                                     int outer, int C, int inner, int act) {
    const int c = blockIdx.x;
    const long long count = (long long)outer * inner;
    float acc = 0.0f;
    for (long long m = threadIdx.x; m < count; m += blockDim.x) {
        const long long o = m / inner;
        const long long k = m - o * inner;
        const long long idx = (o * C + c) * inner + k;
        const float d = g[idx] * act_grad_from_output(act, y[idx]);
        dx[idx] = d;
        acc += d;
    }
    acc = block_reduce_sum(acc);
    if (threadIdx.x == 0) dbias[c] = acc;
}
