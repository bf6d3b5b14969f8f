// emu_probe.cu -- test-only kernels that probe the CPU emulation itself (tests/test_kernels.py).
// Not shipped; each kernel exercises one feature of kernels/cuda_emu.h or one error it must report.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif

// A planted out-of-bounds write: thread 0 writes y[n], one past the end (AddressSanitizer must catch it).
extern "C" __global__ void oob_write(float* y, int n, int plant) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 1.0f;
    if (plant && i == 0) y[n] = 2.0f;
}

// Reverses each block's chunk through shared memory: needs a working __syncthreads.
extern "C" __global__ void reverse_block(const float* x, float* y) {
    __shared__ float s[1024];
    const int t = threadIdx.x;
    const int base = blockIdx.x * blockDim.x;
    s[t] = x[base + t];
    __syncthreads();
    y[base + t] = s[blockDim.x - 1 - t];
}

// Every shuffle flavour for one value per thread (blockDim.x a multiple of 32).
extern "C" __global__ void shuffles(const float* x, float* down, float* up, float* xr, float* idx, float* total) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = x[g];
    down[g] = __shfl_down_sync(0xffffffffu, v, 3);
    up[g] = __shfl_up_sync(0xffffffffu, v, 2);
    xr[g] = __shfl_xor_sync(0xffffffffu, v, 5);
    idx[g] = __shfl_sync(0xffffffffu, v, 7);
    float s = v;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    total[g] = __shfl_sync(0xffffffffu, s, 0);
}

// Linear thread id of a 3-D grid of 3-D blocks.
extern "C" __global__ void index3d(int* out) {
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int nt = blockDim.x * blockDim.y * blockDim.z;
    out[b * nt + t] = b * nt + t;
}

// Float atomicAdd from every thread of the grid (blocks run on several OS threads).
extern "C" __global__ void atomic_count(float* acc) { atomicAdd(acc, 1.0f); }

// Divergent __syncthreads: half the threads return first (an error, never a hang).
extern "C" __global__ void divergent_sync(float* y) {
    if (threadIdx.x >= 16) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// A barrier reached by a thread other than 0 after thread 0 finished without one.
extern "C" __global__ void late_sync(float* y) {
    if (threadIdx.x == 5) __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// A full-warp shuffle that half the warp never reaches.
extern "C" __global__ void partial_warp(float* y) {
    float v = y[threadIdx.x];
    if (threadIdx.x < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

// A full-mask shuffle in a block of 40 threads: warp 1 has only 8 lanes, undefined on a GPU.
extern "C" __global__ void partial_warp_block(float* y) {
    y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, y[threadIdx.x], 1);
}

// width 16, lane mask 16: the upper half reads the earlier group, the lower half keeps its own value.
extern "C" __global__ void xor_width16(const float* x, float* out) {
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 16, 16);
}

// A shared-memory race that needs one warp to run ahead of another: each thread reads its partner's slot
// in the other warp, passes a warp barrier, then writes its own slot again with no __syncthreads between
// the read and the write (the bug of a block reduction missing its leading barrier). Launched with blocks
// of 64 threads; the emulator runs one warp a phase ahead, so the other reads the overwritten values.
extern "C" __global__ void write_after_read_race(float* out) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    s[t] = 1.0f;
    __syncthreads();
    const float seen = s[(t + 32) % 64];
    __syncwarp();
    s[t] = 2.0f;   // a correct kernel would __syncthreads() before this write
    __syncthreads();
    out[blockIdx.x * 64 + t] = seen;
}
