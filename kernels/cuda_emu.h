// cuda_emu.h -- run minifb's CUDA kernels on the CPU, unchanged.
//
// Every kernel in this folder is compiled two ways: by nvcc/NVRTC for the GPU, and by g++ as plain C++
// against this header (see minifb/kernels.py, which builds a shared library and launches it via ctypes).
// A .cu file opts in with
//
//     #ifndef __CUDACC__
//     #include "cuda_emu.h"
//     #endif
//
// What the header provides
// ------------------------
// * threadIdx / blockIdx / blockDim / gridDim: `thread_local` variables, set by the launcher.
// * __global__ / __device__ / __host__ / __forceinline__ / __launch_bounds__ / __restrict__: keywords that
//   become nothing (or `inline`) in C++.
// * __shared__: `static thread_local`. All CUDA threads of one block run on the same OS thread (see below),
//   so they see the same array; blocks on other OS threads get their own copy.
// * __syncthreads(), __syncwarp(), __shfl_{sync,up_sync,down_sync,xor_sync}: barriers, see "fibers".
// * atomicAdd (float via a compare-and-swap loop, int/unsigned natively), atomicMax for int, __threadfence.
// * __int_as_float / __float_as_int and the C math functions (expf, logf, tanhf, fmaxf, sqrtf, ...).
//
// How a launch runs
// -----------------
// emu::launch(kernel, grid, block, args) spreads the blocks of the grid over OpenMP threads. Inside one OS
// thread a block runs in one of two ways:
//
// 1. Plain loop. Most kernels (element-wise ones) never wait for each other, so the block's threads are
//    simply called one after another: threadIdx is set, the kernel function is called, it returns.
//    (A barrier reached here is divergence: the thread leaves the kernel by longjmp and the launch fails.)
// 2. Fibers. A kernel that calls __syncthreads() or a warp intrinsic needs every thread of the block to
//    reach the barrier before any continues. Each CUDA thread then becomes a fiber (a ucontext with its own
//    small stack). A fiber runs until it reaches a barrier, where it records what it waits for and switches
//    back to the block's scheduler. The scheduler runs one warp at a time (the highest-numbered first in
//    even-numbered blocks, the lowest first in odd ones): it resumes that warp's fibers and releases its
//    warp barrier as soon as every lane the mask names waits there, until all of the warp's threads wait
//    at __syncthreads or have finished; then the next warp.
//    When every live thread waits at __syncthreads it releases them all. Divergence (a thread that exits
//    while others wait, a warp barrier reached by some lanes while others wait at __syncthreads) and
//    deadlock are reported as an error, never a hang.
//    Running a warp a whole phase ahead of the others is one legal GPU schedule, chosen because it exposes
//    a missing __syncthreads between reading shared memory and writing it again (a round-robin schedule,
//    in which every fiber reaches its next barrier before any is released, hid that). It is still one
//    schedule among many: compute-sanitizer's racecheck on a GPU (benchmarks/gpu_check.sh) is the full check.
//
// Which of the two is needed is found per block at run time: thread 0 always starts as a fiber. If it
// finishes without touching a barrier the kernel is barrier-free for this block and the remaining threads
// run as a plain loop (a barrier reached later by another thread is divergence: an error). If thread 0
// stops at a barrier, all the block's threads become fibers. So element-wise kernels pay one context
// switch per block, not per thread.
//
// Warp shuffles go through a per-warp exchange array: each lane writes its value, waits at the warp
// barrier, then reads its source lane's slot. The array is double-buffered by the warp's barrier count, so
// a fast lane writing its next shuffle never overwrites a slot a slow lane still has to read. A warp is NOT
// lockstep here: kernels must never rely on implicit warp synchrony (use __syncwarp / shuffles).
//
// AddressSanitizer: when compiled with -fsanitize=address the fiber switches are annotated
// (__sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber) so ASan follows the stack changes.
// ucontext is used instead of setjmp/longjmp on purpose: glibc's _FORTIFY_SOURCE checks longjmp targets
// and aborts when jumping to another stack; swapcontext has no such check.
#pragma once

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <atomic>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MINIFB_EMU_ASAN 1
#endif

// ---------------------------------------------------------------- CUDA keywords and built-in variables
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------- bit casts and atomics
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }

inline float atomicAdd(float* addr, float v) {
    // CUDA has a native float atomicAdd; on the CPU it is a compare-and-swap loop on the bit pattern.
    uint32_t* a = reinterpret_cast<uint32_t*>(addr);
    uint32_t old = __atomic_load_n(a, __ATOMIC_RELAXED);
    for (;;) {
        float f; memcpy(&f, &old, 4);
        float n = f + v;
        uint32_t nb; memcpy(&nb, &n, 4);
        if (__atomic_compare_exchange_n(a, &old, nb, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return f;
    }
}
inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
inline int atomicMax(int* a, int v) {
    int old = __atomic_load_n(a, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(a, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---------------------------------------------------------------- the block scheduler
namespace emu {

enum class Wait { Running, Block, Warp, Done };

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    Wait wait = Wait::Running;
    unsigned warp_mask = 0;  // lanes named by the warp barrier this fiber waits at
};

// One per OS thread; runs the blocks that OpenMP hands to this thread, one at a time.
struct BlockRunner {
    static constexpr size_t kStackBytes =
#ifdef MINIFB_EMU_ASAN
        256 * 1024;  // ASan's redzones make frames much larger
#else
        64 * 1024;
#endif
    ucontext_t sched_ctx;
    std::vector<Fiber> fibers;                     // one per CUDA thread of the current block
    std::vector<std::unique_ptr<char[]>> stacks;   // kept across blocks and launches
    std::vector<uint32_t> exchange;                // per warp: 2 buffers x 32 lanes of shuffle values
    std::vector<unsigned> warp_gen;                // per warp: number of warp barriers passed
    int current = -1;                              // running fiber, -1 in the plain loop
    unsigned nthreads = 0;
    void (*invoke)(void*) = nullptr;               // calls the kernel with the launch's arguments
    void* invoke_arg = nullptr;
    std::string error;
    jmp_buf plain_abort;                           // where a barrier in the plain loop jumps to
#ifdef MINIFB_EMU_ASAN
    const void* main_stack_bottom = nullptr;
    size_t main_stack_size = 0;
#endif

    char* stack(unsigned t) {
        while (stacks.size() <= t) stacks.emplace_back(new char[kStackBytes]);
        return stacks[t].get();
    }
};

inline thread_local BlockRunner tl_runner_storage;  // one per OS thread, reused by every launch
inline thread_local BlockRunner* tl_runner = nullptr;

inline unsigned linear_tid(uint3 t) { return t.x + blockDim.x * (t.y + blockDim.y * t.z); }

// Fiber -> scheduler switch (called by a fiber that waits or has finished).
inline void switch_to_scheduler(BlockRunner& r, Fiber& f, bool finished) {
#ifdef MINIFB_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake, r.main_stack_bottom, r.main_stack_size);
    swapcontext(&f.ctx, &r.sched_ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)finished;
    swapcontext(&f.ctx, &r.sched_ctx);
#endif
}

// Scheduler -> fiber switch; returns when the fiber waits or finishes.
inline void resume(BlockRunner& r, unsigned t) {
    Fiber& f = r.fibers[t];
    r.current = static_cast<int>(t);
    threadIdx = f.tid;
    f.wait = Wait::Running;
#ifdef MINIFB_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, r.stack(t), BlockRunner::kStackBytes);
    swapcontext(&r.sched_ctx, &f.ctx);
    __sanitizer_finish_switch_fiber(fake, &r.main_stack_bottom, &r.main_stack_size);
#else
    swapcontext(&r.sched_ctx, &f.ctx);
#endif
    r.current = -1;
}

inline void fiber_main() {
    BlockRunner& r = *tl_runner;
#ifdef MINIFB_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r.main_stack_bottom, &r.main_stack_size);
#endif
    r.invoke(r.invoke_arg);
    Fiber& f = r.fibers[static_cast<unsigned>(r.current)];
    f.wait = Wait::Done;
    switch_to_scheduler(r, f, true);  // never resumed
}

inline void make_fiber(BlockRunner& r, unsigned t) {
    Fiber& f = r.fibers[t];
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = r.stack(t);
    f.ctx.uc_stack.ss_size = BlockRunner::kStackBytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
    f.wait = Wait::Running;
}

// Called from __syncthreads / warp intrinsics: park the current fiber until the scheduler releases it.
inline void wait_at(Wait kind, unsigned mask, const char* what) {
    BlockRunner& r = *tl_runner;
    if (r.current < 0) {
        // Plain loop: leave the kernel by longjmp to run_block (same stack, so _FORTIFY_SOURCE's check
        // passes; no C++ exceptions, whose ASan interceptor fails when the host is not a C++ program).
        r.error = std::string("divergent barrier: thread ") + std::to_string(linear_tid(threadIdx)) +
                  " reached " + what + " but thread 0 of its block finished without any barrier";
        longjmp(r.plain_abort, 1);
    }
    Fiber& f = r.fibers[static_cast<unsigned>(r.current)];
    f.wait = kind;
    f.warp_mask = mask;
    switch_to_scheduler(r, f, false);
    threadIdx = f.tid;
}

// Releases warp `warp`'s barrier when every lane its mask names waits there (sets `released`).
// Returns false (with r.error set) when a named lane does not exist, has exited or waits at __syncthreads.
inline bool release_warp(BlockRunner& r, unsigned warp, bool& released) {
    const unsigned n = r.nthreads, w0 = warp * 32;
    released = false;
    unsigned mask_seen = 0;
    bool waiting = false;
    for (unsigned t = w0; t < n && t < w0 + 32; ++t)
        if (r.fibers[t].wait == Wait::Warp) { waiting = true; mask_seen = r.fibers[t].warp_mask; }
    if (!waiting) return true;
    bool ok = true;
    for (unsigned lane = 0; lane < 32; ++lane) {
        if (!(mask_seen >> lane & 1u)) continue;
        if (w0 + lane >= n) {   // undefined behaviour on a GPU: the emulator must not make it work
            r.error = "warp barrier names lane " + std::to_string(lane) + " of warp " + std::to_string(warp) +
                      ", which does not exist: the block has " + std::to_string(n) +
                      " threads (a full-mask shuffle needs whole warps)";
            return false;
        }
        Wait w = r.fibers[w0 + lane].wait;
        if (w == Wait::Warp) continue;
        if (w == Wait::Done || w == Wait::Block) {
            r.error = "divergent warp barrier: lane " + std::to_string(lane) + " of warp " +
                      std::to_string(warp) + " is named by the mask but " +
                      (w == Wait::Done ? "has exited" : "waits at __syncthreads");
            return false;
        }
        ok = false;   // a named lane still runs: not yet
    }
    if (!ok) return true;
    for (unsigned lane = 0; lane < 32 && w0 + lane < n; ++lane)
        if ((mask_seen >> lane & 1u) && r.fibers[w0 + lane].wait == Wait::Warp)
            r.fibers[w0 + lane].wait = Wait::Running;
    r.warp_gen[warp] += 1;
    released = true;
    return true;
}

// After a round in which every fiber ran until it waited or finished: release what can be released.
// Returns false (with r.error set) on divergence or deadlock.
inline bool release(BlockRunner& r, bool& all_done) {
    const unsigned n = r.nthreads;
    bool any_block = false, any_done = false;
    all_done = true;
    for (unsigned t = 0; t < n; ++t) {
        Wait w = r.fibers[t].wait;
        if (w != Wait::Done) all_done = false;
        if (w == Wait::Block) any_block = true;
        if (w == Wait::Done) any_done = true;
    }
    if (all_done) return true;

    // Warp barriers first: a warp whose named lanes all wait at the warp barrier goes on.
    bool released = false;
    for (unsigned w0 = 0; w0 < n; w0 += 32) {
        bool this_one = false;
        if (!release_warp(r, w0 / 32, this_one)) return false;
        released = released || this_one;
    }
    if (released) return true;

    // Then the block barrier: every thread of the block must be there.
    if (any_block) {
        if (any_done) {
            r.error = "divergent __syncthreads: some threads of the block exited while others wait at it";
            return false;
        }
        for (unsigned t = 0; t < n; ++t) {
            if (r.fibers[t].wait != Wait::Block) {
                r.error = "deadlock: thread " + std::to_string(t) +
                          " waits at a warp barrier while others wait at __syncthreads";
                return false;
            }
        }
        for (unsigned t = 0; t < n; ++t) r.fibers[t].wait = Wait::Running;
        return true;
    }
    r.error = "deadlock: no thread can make progress (warp barrier with an unsatisfiable mask)";
    return false;
}

#ifdef MINIFB_EMU_ASAN
constexpr size_t kAbandonedBytes = 64 * 1024;   // more than a kernel's frames and an error message take
#endif

// Runs one block (blockIdx already set). Returns false, with r.error set, on divergence or deadlock.
inline bool run_block(BlockRunner& r) {
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    r.nthreads = n;
    r.fibers.resize(n);
    r.warp_gen.assign((n + 31) / 32, 0u);
    r.exchange.assign(static_cast<size_t>((n + 31) / 32) * 64, 0u);
    for (unsigned t = 0; t < n; ++t) {
        r.fibers[t].tid = uint3(t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y));
    }

    // Probe: thread 0 as a fiber.
    make_fiber(r, 0);
    resume(r, 0);
    if (r.fibers[0].wait == Wait::Done) {
        // No barrier in this block: the rest as a plain loop on this OS thread's stack.
        if (setjmp(r.plain_abort) != 0) {
#ifdef MINIFB_EMU_ASAN
            // The longjmp abandoned the kernel's frames below this one. ASan clears their poisoned scopes
            // on a longjmp, but refuses to on a thread that has switched fibers ("ignoring requested
            // __asan_handle_no_return"), and the stale poison then fails a later, innocent launch on this
            // thread. So clear the abandoned region (dead frames only: nothing below this frame is live).
            char here;
            const uintptr_t top = reinterpret_cast<uintptr_t>(&here);
            __asan_unpoison_memory_region(reinterpret_cast<void*>(top - kAbandonedBytes), kAbandonedBytes);
#endif
            return false;
        }
        for (unsigned t = 1; t < n; ++t) {
            threadIdx = r.fibers[t].tid;
            r.invoke(r.invoke_arg);
        }
        return true;
    }
    // Thread 0 waits at a barrier: every thread becomes a fiber.
    for (unsigned t = 1; t < n; ++t) {
        make_fiber(r, t);
        resume(r, t);
    }
    // Run ahead: one warp with runnable threads runs, its warp barriers released as soon as its lanes
    // reach them, until all its threads wait at __syncthreads or have finished; only then does another
    // warp run. So one warp can be a whole phase ahead of another, as on a GPU, and a kernel that reuses
    // shared memory without a __syncthreads in between reads the wrong values here too. Even-numbered
    // blocks run their highest warp first, odd-numbered ones their lowest, so that a race shows whichever
    // side of it must run ahead.
    const unsigned nwarps = (n + 31) / 32;
    const bool highest_first = ((blockIdx.x + blockIdx.y + blockIdx.z) & 1u) == 0;
    for (;;) {
        unsigned warp = nwarps;
        for (unsigned i = 0; i < nwarps && warp == nwarps; ++i) {
            const unsigned w = highest_first ? nwarps - 1 - i : i;
            for (unsigned t = w * 32; t < n && t < w * 32 + 32; ++t)
                if (r.fibers[t].wait == Wait::Running) { warp = w; break; }
        }
        if (warp != nwarps) {
            for (unsigned t = warp * 32; t < n && t < warp * 32 + 32; ++t)
                if (r.fibers[t].wait == Wait::Running) resume(r, t);
            bool released = false;
            if (!release_warp(r, warp, released)) return false;
            continue;
        }
        bool all_done = false;   // nothing can run: release the block barrier (or report what is stuck)
        if (!release(r, all_done)) return false;
        if (all_done) return true;
    }
}

// Shuffle: write own value, wait for the named lanes, read the source lane's value.
template <class T>
inline T shuffle(unsigned mask, T v, int mode, int param, int width) {
    static_assert(sizeof(T) == 4, "the emulated shuffles move 4-byte values");
    BlockRunner& r = *tl_runner;
    const unsigned t = linear_tid(threadIdx);
    const unsigned warp = t / 32, lane = t % 32;
    const unsigned gen = r.warp_gen[warp];
    uint32_t* slots = &r.exchange[(static_cast<size_t>(warp) * 2 + (gen & 1u)) * 32];
    memcpy(&slots[lane], &v, 4);
    wait_at(Wait::Warp, mask, "a warp shuffle");
    const int w = (width <= 0 || width > 32) ? 32 : width;
    const int base = static_cast<int>(lane) & ~(w - 1);
    int src = static_cast<int>(lane);
    if (mode != 0) param &= 31;   // shfl.sync reads only the low 5 bits of an offset or lane mask (PTX ISA)
    switch (mode) {
        case 0: src = base + ((param % w) + w) % w; break;                           // __shfl_sync
        case 1: src = static_cast<int>(lane) - param; if (src < base) src = lane; break;  // up
        case 2: src = static_cast<int>(lane) + param; if (src >= base + w) src = lane; break;  // down
        case 3: src = static_cast<int>(lane) ^ param; if (src >= base + w) src = lane; break;  // CUDA: an
                // earlier group may be read, a later one gives the lane's own value
    }
    if (warp * 32 + static_cast<unsigned>(src) >= r.nthreads) return v;  // lane does not exist
    T out;
    memcpy(&out, &slots[src], 4);
    return out;
}

// Type-erased kernel call: args[i] points at the i-th argument, exactly as cudaLaunchKernel takes them.
template <class... A>
struct Call {
    void (*kernel)(A...);
    void** args;
    template <size_t... I>
    void run(std::index_sequence<I...>) { kernel(*static_cast<std::decay_t<A>*>(args[I])...); }
    static void invoke(void* self) { static_cast<Call*>(self)->run(std::index_sequence_for<A...>{}); }
};

// Launch over a grid. Returns 0, or 1 with a message in err when a block failed.
template <class... A>
int launch(void (*kernel)(A...), dim3 grid, dim3 block, void** args, char* err, int errlen) {
    const long long nblocks = static_cast<long long>(grid.x) * grid.y * grid.z;
    const unsigned long long nthreads = static_cast<unsigned long long>(block.x) * block.y * block.z;
    std::string failure;
    if (nthreads == 0 || nthreads > 1024 || nblocks <= 0) {
        failure = "invalid launch configuration: grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) +
                  "," + std::to_string(grid.z) + ") block (" + std::to_string(block.x) + "," +
                  std::to_string(block.y) + "," + std::to_string(block.z) + ")";
    } else {
        std::atomic<bool> failed{false};
#pragma omp parallel
        {
            BlockRunner& runner = tl_runner_storage;
            tl_runner = &runner;
            Call<A...> call{kernel, args};
            runner.invoke = &Call<A...>::invoke;
            runner.invoke_arg = &call;
            gridDim = grid;
            blockDim = block;
#pragma omp for schedule(dynamic, 4)
            for (long long b = 0; b < nblocks; ++b) {
                if (failed.load(std::memory_order_relaxed)) continue;
                blockIdx = uint3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                                 static_cast<unsigned>(b / (static_cast<long long>(grid.x) * grid.y)));
                if (!run_block(runner) && !failed.exchange(true)) {
                    failure = "block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                              std::to_string(blockIdx.z) + "): " + runner.error;
                }
            }
        }
    }
    if (failure.empty()) return 0;
    if (err && errlen > 0) {
        strncpy(err, failure.c_str(), static_cast<size_t>(errlen - 1));
        err[errlen - 1] = '\0';
    }
    return 1;
}

}  // namespace emu

// ---------------------------------------------------------------- barriers and warp intrinsics
inline void __syncthreads() { emu::wait_at(emu::Wait::Block, 0u, "__syncthreads"); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::wait_at(emu::Wait::Warp, mask, "__syncwarp"); }
template <class T> inline T __shfl_sync(unsigned m, T v, int src, int w = 32) { return emu::shuffle(m, v, 0, src, w); }
template <class T> inline T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) { return emu::shuffle(m, v, 1, (int)d, w); }
template <class T> inline T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) { return emu::shuffle(m, v, 2, (int)d, w); }
template <class T> inline T __shfl_xor_sync(unsigned m, T v, int x, int w = 32) { return emu::shuffle(m, v, 3, x, w); }

// One exported C entry point per kernel, generated by minifb/kernels.py:
//     MINIFB_EMU_EXPORT(bias_act_fwd)
// defines  extern "C" int minifb_launch_bias_act_fwd(gx, gy, gz, bx, by, bz, void** args, char* err, int n).
#define MINIFB_EMU_EXPORT(name)                                                                          \
    extern "C" int minifb_launch_##name(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,    \
                                        unsigned bz, void** args, char* err, int errlen) {                  \
        return ::emu::launch(name, dim3(gx, gy, gz), dim3(bx, by, bz), args, err, errlen);                   \
    }
