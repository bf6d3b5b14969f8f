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

// ---------------------------------------------------------------- added by mutation testing (session 13)
// Shuffles with width 8 (blockDim.x a multiple of 32): up/down stop at the 8-lane segment's edge, an index
// wraps modulo the width (negative and past-the-width ones too).
extern "C" __global__ void shuffles_width8(const float* x, float* up, float* down, float* neg, float* big) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = x[g];
    up[g] = __shfl_up_sync(0xffffffffu, v, 3, 8);
    down[g] = __shfl_down_sync(0xffffffffu, v, 3, 8);
    neg[g] = __shfl_sync(0xffffffffu, v, -1, 8);
    big[g] = __shfl_sync(0xffffffffu, v, 11, 8);
}

// An inclusive prefix sum by __shfl_up_sync (Hillis-Steele): lane l reads lane l-d, which has already gone
// on to its next shuffle when the emulator resumes lanes in order, so the exchange must be double-buffered.
extern "C" __global__ void warp_scan(const float* x, float* out) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    float v = x[g];
    for (int d = 1; d < 32; d <<= 1) {
        const float o = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += o;
    }
    out[g] = v;
}

// xor shuffle by 1 in a 3-D block: lanes follow the linear thread id x + bx * (y + by * z).
extern "C" __global__ void shuffle_3d(const float* x, float* out) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int g = b * blockDim.x * blockDim.y * blockDim.z + t;
    out[g] = __shfl_xor_sync(0xffffffffu, x[g], 1) + 1000.0f * __shfl_sync(0xffffffffu, x[g], 31);
}

// Integer and float atomics: every thread takes a ticket (the old value), raises a maximum.
extern "C" __global__ void atomics(int* counter, int* tickets, int* maxv, int* max_old, float* facc,
                                   float* fold, unsigned* ucounter, int n) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= n) return;
    tickets[g] = atomicAdd(counter, 1);
    max_old[g] = atomicMax(maxv, (g * 7919) % n);
    fold[g] = atomicAdd(facc, 1.0f);
    atomicAdd(ucounter, 2u);
}

// The write-after-read race of write_after_read_race, in a 3-D grid: the run-ahead order flips with the
// parity of blockIdx.x + blockIdx.y + blockIdx.z.
extern "C" __global__ void write_after_read_race_3d(float* out) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    s[t] = 1.0f;
    __syncthreads();
    const float seen = s[(t + 32) % 64];
    __syncwarp();
    s[t] = 2.0f;
    __syncthreads();
    out[b * 64 + t] = seen;
}

// Lanes 0..15 wait at __syncwarp while lanes 16..31 wait at __syncthreads: divergence, never a release.
extern "C" __global__ void warp_vs_block_barrier(float* y) {
    if (threadIdx.x < 16) __syncwarp(); else __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// Lane 0 waits at __syncwarp(0x3) for lane 1, which has exited; lanes 2..31 pass a barrier of their own.
extern "C" __global__ void warp_barrier_on_an_exited_lane(float* y) {
    const unsigned lane = threadIdx.x & 31;
    if (lane == 1) return;
    if (lane == 0) __syncwarp(0x3u); else __syncwarp(0xfffffffcu);
    y[threadIdx.x] = 1.0f;
}

// Offsets of 32 or more: shfl.sync reads only their low 5 bits, so 33 acts as 1.
extern "C" __global__ void shuffle_offsets_past_31(const float* x, float* down, float* xr, float* up) {
    const int t = threadIdx.x;
    down[t] = __shfl_down_sync(0xffffffffu, x[t], 33);
    xr[t] = __shfl_xor_sync(0xffffffffu, x[t], 33);
    up[t] = __shfl_up_sync(0xffffffffu, x[t], 33);
}
