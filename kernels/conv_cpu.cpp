// minifb's compiled CPU library. Mainly a direct convolution: the three convolution primitives of
// minifb/ops/conv.py, compiled. Then, at the end of the file, small matrix products, which minifb keeps
// off BLAS's threads, the LSTM's pointwise step (float32) and the SGD optimiser's step.
//
// Not a CUDA kernel: a plain C++ file that minifb/cpu_conv.py compiles once per machine with the host's
// C++ compiler (-O3 -march=native -pthread) and calls through ctypes on NumPy arrays. It exists because
// the NumPy path (im2col + one BLAS product) spends half a convolution step writing and reading column
// matrices; here no column matrix is ever written. Each output tile is accumulated in vector registers
// straight from the channels-last input and the weights, which is how CPU libraries such as oneDNN
// convolve. Work is shared among the threads of the library's own small pool (see Pool below). The NumPy
// path stays as the reference these functions are tested against (tests/test_conv.py runs on both,
// tests/test_cpu_conv.py compares them) and as the fallback where no compiler is present.
// One library per dtype: MINIFB_CONV_TYPE (float or double) and MINIFB_CONV_SUFFIX (f32 or f64).
//
// Layouts (all C-contiguous, channels last, G groups of Cg = C/G input and Kg = K/G output channels):
//   x   (N, H, W, C)      the input (or its gradient); the zero padding (pt top, pl left rows and
//                         columns) is never stored
//   y   (N, OH, OW, K)    the output
//   w   (G, kh, kw, Cg, Kgp) the weight for conv_forward / conv_weight_grad, Kg padded with zeros to a
//                         whole number of vectors (Kgp)
//   wt  (G, kh, kw, Kg, Cgp) the weight for conv_input_grad, per tap transposed, Cg padded likewise
//   y[n, oh, ow, g*Kg + k] = b[g*Kg + k]
//       + sum_{i, j, c} w[g, i, j, c, k] * x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, g*Cg + c]
// with x = 0 outside the image.
//
// The vector type is GCC/Clang's portable vector extension: 64 bytes, i.e. one AVX-512 register, two
// AVX2 registers, or four SSE ones, whichever -march=native gives. Register tiles: R output pixels
// times V vectors of output channels, R * V accumulators, sized to leave room for the V weight vectors
// and one broadcast among AVX-512's 32 registers.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#include <unistd.h>
#include <sched.h>

namespace {

// ---------------------------------------------------------------------------------------- threads
// A pool of worker threads that wait a little for the next call (spin_us, yield_us below) and then sleep
// on a condition variable. Not OpenMP: libgomp's threads spin without yielding after each parallel
// region, and NumPy's OpenBLAS threads spin after each product, so on a machine with few cores each
// pool's spinning stole the other's cores (measured: a W2 step 3-4x slower with OpenMP;
// benchmarks/NOTES.md, "Session 15"). Tasks are handed out one at a time from an atomic counter (in
// short runs, see parallel_for), so a thread that gets less of a core (to a spinning BLAS thread, say)
// simply takes fewer tasks instead of holding the others up at the end.

// How long an idle thread polls before it sleeps: spin_us with the pause instruction, then up to yield_us
// more, giving its CPU to any other runnable thread (sched_yield) between looks. Measured in the runner's
// conditions (NOTES, "Session 15" and "Session 17"). Without the first 50 us a worker asleep since the
// pause before a step came late to each call (conv2d's step 27-31 ms against 25-26). And on this
// project's virtual machine a worker that sleeps between the calls of one step, a millisecond or two of
// NumPy work apart, is slow to wake and then preempted: the transposed convolution's step took 1.4-1.6x
// PyTorch's with 50 us, 1.0-1.1x with these 2 ms more (PyTorch's OpenMP workers spin through such gaps
// too). Yielding rather than spinning through them keeps the worker from taking time from a thread that
// shares its CPU.
constexpr long spin_us = 50, yield_us = 2000;

class Pool {
  public:
    // Runs job(thread) for thread = 0 .. n-1, 0 on the calling thread, and returns when all are done.
    void run(int n, const std::function<void(int)>& job) {
        if (n <= 1) { job(0); return; }
        std::unique_lock<std::mutex> lock(call_);   // one parallel call at a time (Python threads)
        {
            std::lock_guard<std::mutex> g(m_);
            while (int(workers_) < n - 1) {
                std::thread(&Pool::work, this, int(workers_) + 1).detach();   // never joined: the pool
                ++workers_;                                                   // lives as long as the process
            }
            job_ = &job;
            wanted_ = n;
            pending_.store(n - 1);
            generation_.fetch_add(1);
        }
        wake_.notify_all();
        job(0);
        if (!spin_until([this] { return pending_.load() == 0; })) {
            std::unique_lock<std::mutex> g(m_);
            done_.wait(g, [this] { return pending_.load() == 0; });
        }
    }


  private:
    // Polls ready() for up to spin_us + yield_us; whether it became true. A worker that has just finished
    // a call waits this long before sleeping, so the calls of one step, a few Python statements apart,
    // find it awake.
    template <typename F> static bool spin_until(F ready) {
        const auto spun = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us);
        for (int i = 0;; ++i) {
            if (ready()) return true;
            if ((i & 63) == 0 && std::chrono::steady_clock::now() > spun) break;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        const auto yielded = spun + std::chrono::microseconds(yield_us);
        while (std::chrono::steady_clock::now() < yielded) {
            if (ready()) return true;
            sched_yield();
        }
        return ready();
    }

    void work(int id) {
        unsigned long seen = 0;
        for (;;) {
            if (!spin_until([&] { return generation_.load() != seen; })) {
                std::unique_lock<std::mutex> g(m_);
                wake_.wait(g, [&] { return generation_.load() != seen; });
            }
            const std::function<void(int)>* job;
            int wanted;
            {
                std::lock_guard<std::mutex> g(m_);
                seen = generation_.load();
                job = job_;
                wanted = wanted_;
            }
            if (id >= wanted) continue;
            (*job)(id);
            if (pending_.fetch_sub(1) == 1) {
                std::lock_guard<std::mutex> g(m_);
                done_.notify_one();
            }
        }
    }

    std::mutex call_, m_;
    std::condition_variable wake_, done_;
    const std::function<void(int)>* job_ = nullptr;
    std::atomic<unsigned long> generation_{0};
    std::atomic<int> pending_{0};
    int wanted_ = 0;
    long workers_ = 0;
};

std::atomic<int> thread_count{1};

Pool& pool() {
    // Made afresh in a forked child, which has none of the parent's worker threads. Never destroyed:
    // its detached workers may still be waiting on it while the process exits.
    static Pool* p = nullptr;
    static pid_t owner = 0;
    static std::mutex m;
    std::lock_guard<std::mutex> g(m);
    if (p == nullptr || owner != getpid()) {
        p = new Pool;
        owner = getpid();
    }
    return *p;
}

// body(task, thread) for every task in 0 .. total-1, spread over the pool's threads.
template <typename F> void parallel_for(long total, int threads, F&& body) {
    threads = int(std::max<long>(1, std::min<long>(threads, total)));
    // runs of consecutive tasks (neighbouring rows share input rows in the cache), about 8 per thread
    const long run = std::max<long>(1, total / (8L * threads));
    std::atomic<long> next{0};
    std::function<void(int)> job = [&](int thread) {
        for (long t0; (t0 = next.fetch_add(run, std::memory_order_relaxed)) < total;)
            for (long t = t0; t < std::min(total, t0 + run); ++t) body(t, thread);
    };
    pool().run(threads, job);
}

template <typename T> struct Vec;
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(64)));
    typedef float unaligned __attribute__((vector_size(64), aligned(4)));
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(64)));
    typedef double unaligned __attribute__((vector_size(64), aligned(8)));
};

template <typename T> constexpr int lanes() { return 64 / sizeof(T); }

template <typename T> inline typename Vec<T>::type load(const T* p) {
    return *reinterpret_cast<const typename Vec<T>::unaligned*>(p);
}
template <typename T> inline void store(T* p, typename Vec<T>::type v) {
    *reinterpret_cast<typename Vec<T>::unaligned*>(p) = v;
}
// a - 0 is a for every a (unlike a + 0 with a = -0), so the subtraction folds away: a plain broadcast
template <typename T> inline typename Vec<T>::type splat(T a) { return a - typename Vec<T>::type{}; }

// the first n lanes of v stored to p (n < lanes), the rest of p's memory untouched
template <typename T> inline void store_part(T* p, typename Vec<T>::type v, int n) {
    T t[lanes<T>()];
    store(t, v);
    for (int l = 0; l < n; ++l) p[l] = t[l];
}
template <typename T> inline void add_part(T* p, typename Vec<T>::type v, int n) {
    T t[lanes<T>()];
    store(t, v);
    for (int l = 0; l < n; ++l) p[l] += t[l];
}

// Calls f.template run<R>() with R = r, for r in 1..RMAX, so the tile size is a compile-time constant
// (the accumulators then live in registers) while the row's last, partial tile still gets a tile.
template <int RMAX, typename F> inline void with_tile(int r, F& f) {
    if constexpr (RMAX >= 1) {
        if (r == RMAX) { f.template run<RMAX>(); return; }
        with_tile<RMAX - 1>(r, f);
    }
}

// f(V, RMAX) with the register tile for `vectors` vectors of channels still to do (V = min(4, vectors))
// as compile-time constants (std::integral_constant): V vectors wide, up to RMAX pixels or channels long,
// R * V accumulators plus V loaded vectors within AVX-512's 32 registers.
template <typename F> inline void with_tile_shape(long vectors, F&& f) {
    using std::integral_constant;
    switch (std::min<long>(4, vectors)) {
        case 4: f(integral_constant<int, 4>{}, integral_constant<int, 6>{}); break;
        case 3: f(integral_constant<int, 3>{}, integral_constant<int, 8>{}); break;
        case 2: f(integral_constant<int, 2>{}, integral_constant<int, 12>{}); break;
        default: f(integral_constant<int, 1>{}, integral_constant<int, 16>{}); break;
    }
}

struct Geometry {
    long N, H, W, C, K, G, kh, kw, sh, sw, dh, dw, OH, OW, pt, pl;
};

// f(first, size) for tiles of at most RMAX covering 0 .. total-1, as even as can be (a row of 14
// becomes 5 + 5 + 4, not 6 + 6 + 2: a small tile has few accumulators per load)
template <int RMAX, typename F> inline void for_tiles(long total, F&& f) {
    const long tiles = (total + RMAX - 1) / RMAX;
    if (tiles == 0) return;
    const long base = total / tiles, extra = total % tiles;
    long first = 0;
    for (long t = 0; t < tiles; ++t) {
        const long size = base + (t < extra);
        f(first, int(size));
        first += size;
    }
}

// ------------------------------------------------------------------------------------------ forward
// Every kernel reads and writes the unpadded channels-last image (N, H, W, C), with the padding (pt, pl)
// given: a tap that lands in the padding reads zeros, so
// it is skipped, and no padded copy of the image is made (fresh pages for such copies were most of a
// small convolution's time here; benchmarks/NOTES.md, "Session 15").

// One row tile: y[n, oh, ow0 .. ow0+R, k0 .. k0 + V*lanes] of one group; img is the image's first
// channel of that group, zeros a row of C zeros that stands in for a pixel in the padding.
template <typename T, int V> struct ForwardTile {
    const T *img, *w, *b, *zeros;
    T* y;
    const Geometry* q;
    long cg, kg, kgp, k0, oh, ow0;

    template <int R> void run() const {
        typedef typename Vec<T>::type vec;
        constexpr int L = lanes<T>();
        vec acc[R][V];
        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) {
            vec bv = load(b + k0 + v * L);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) acc[r][v] = bv;
        }
        const long xs = q->sw * q->C;
        for (long i = 0; i < q->kh; ++i) {
            const long ih = oh * q->sh - q->pt + i * q->dh;
            if (ih < 0 || ih >= q->H) continue;
            const T* row = img + ih * q->W * q->C;
            for (long j = 0; j < q->kw; ++j) {
                const long iw0 = ow0 * q->sw - q->pl + j * q->dw;
                const T* wp = w + (i * q->kw + j) * cg * kgp + k0;
                if (iw0 >= 0 && iw0 + (R - 1) * q->sw < q->W) {       // inside the image: one stride
                    const T* xp = row + iw0 * q->C;
                    for (long c = 0; c < cg; ++c) {
                        vec wv[V];
                        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) wv[v] = load(wp + c * kgp + v * L);
                        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                            vec xb = splat(xp[r * xs + c]);
                            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] += xb * wv[v];
                        }
                    }
                } else {                                                 // at the border: a pointer each
                    if (iw0 + (R - 1) * q->sw < 0 || iw0 >= q->W) continue;
                    const T* xp[R];
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                        const long iw = iw0 + r * q->sw;
                        xp[r] = (iw >= 0 && iw < q->W) ? row + iw * q->C : zeros;
                    }
                    for (long c = 0; c < cg; ++c) {
                        vec wv[V];
                        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) wv[v] = load(wp + c * kgp + v * L);
                        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                            vec xb = splat(xp[r][c]);
                            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] += xb * wv[v];
                        }
                    }
                }
            }
        }
        const long valid = kg - k0;
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) {
                T* yp = y + r * q->K + k0 + v * L;
                if (valid >= (v + 1) * L) store(yp, acc[r][v]);
                else if (valid > v * L) store_part(yp, acc[r][v], int(valid - v * L));
            }
    }
};

template <typename T, int V, int RMAX>
void forward_row(const T* img, const T* w, const T* b, const T* zeros, T* y, const Geometry& q, long cg, long kg,
                 long kgp, long k0, long oh) {
    ForwardTile<T, V> t{img, w, b, zeros, y, &q, cg, kg, kgp, k0, oh, 0};
    for_tiles<RMAX>(q.OW, [&](long ow, int r) {
        t.ow0 = ow;
        t.y = y + ow * q.K;
        with_tile<RMAX>(r, t);
    });
}

template <typename T>
void conv_forward(const T* x, const T* w, const T* b, T* y, const Geometry& q) {
    constexpr int L = lanes<T>();
    const long cg = q.C / q.G, kg = q.K / q.G, kgp = (kg + L - 1) / L * L;
    const long kblocks = (kgp + 4 * L - 1) / (4 * L);
    const std::vector<T> zeros(std::max<long>(1, q.C), T(0));
    parallel_for(q.N * q.OH * q.G, thread_count.load(), [&](long task, int) {
        const long g = task % q.G, oh = task / q.G % q.OH, n = task / q.G / q.OH;
        const T* img = x + n * q.H * q.W * q.C + g * cg;
        const T* wg = w + g * q.kh * q.kw * cg * kgp;
        const T* bg = b + g * kgp;
        T* yr = y + ((n * q.OH + oh) * q.OW) * q.K + g * kg;
        for (long kb = 0; kb < kblocks; ++kb) {
            const long k0 = kb * 4 * L;
            with_tile_shape((kgp - k0) / L, [&](auto v, auto rmax) {
                forward_row<T, v(), rmax()>(img, wg, bg, zeros.data(), yr, q, cg, kg, kgp, k0, oh);
            });
        }
    });
}

// ------------------------------------------------------------------------------------ input gradient
// The adjoint of the forward in x, as a scatter: each output pixel's gradient, times the transposed
// weight of tap (i, j), is added into the input pixel that tap read. Threads own whole (image, group)
// pairs, so no two threads ever add into the same numbers (no atomics). Taps that read padding are
// skipped, so no padded buffer is written and cropped.
template <typename T, int V> struct InputGradTile {
    const T *gy, *wt;
    T* gx;
    const Geometry* q;
    long cg, kg, cgp, c0, oh, ow0;

    template <int R> void run() const {
        typedef typename Vec<T>::type vec;
        constexpr int L = lanes<T>();
        const long valid = cg - c0;
        for (long i = 0; i < q->kh; ++i) {
            const long ih = oh * q->sh - q->pt + i * q->dh;
            if (ih < 0 || ih >= q->H) continue;
            for (long j = 0; j < q->kw; ++j) {
                const long iw0 = ow0 * q->sw - q->pl + j * q->dw;
                if (iw0 + (R - 1) * q->sw < 0 || iw0 >= q->W) continue;
                vec acc[R][V];
                _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
                    _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] = vec{};
                const T* wp = wt + (i * q->kw + j) * kg * cgp + c0;
                for (long k = 0; k < kg; ++k) {
                    vec wv[V];
                    _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) wv[v] = load(wp + k * cgp + v * L);
                    _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                        vec gb = splat(gy[r * q->K + k]);
                        _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] += gb * wv[v];
                    }
                }
                T* xr = gx + ih * q->W * q->C + c0;
                _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                    const long iw = iw0 + r * q->sw;
                    if (iw < 0 || iw >= q->W) continue;
                    _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) {
                        T* p = xr + iw * q->C + v * L;
                        if (valid >= (v + 1) * L) store(p, load(p) + acc[r][v]);
                        else if (valid > v * L) add_part(p, acc[r][v], int(valid - v * L));
                    }
                }
            }
        }
    }
};

template <typename T, int V, int RMAX>
void input_grad_row(const T* gy, const T* wt, T* gx, const Geometry& q, long cg, long kg, long cgp, long c0,
                    long oh) {
    InputGradTile<T, V> t{gy, wt, gx, &q, cg, kg, cgp, c0, oh, 0};
    for_tiles<RMAX>(q.OW, [&](long ow, int r) {
        t.gy = gy + ow * q.K;
        t.ow0 = ow;
        with_tile<RMAX>(r, t);
    });
}

// b (C) is what gx starts from before the additions: zeros for a convolution's input gradient, the bias
// of a transposed convolution (whose forward this is), added here instead of in a pass of its own.
template <typename T>
void conv_input_grad(const T* gy, const T* wt, const T* b, T* gx, const Geometry& q) {
    constexpr int L = lanes<T>();
    const long cg = q.C / q.G, kg = q.K / q.G, cgp = (cg + L - 1) / L * L;
    const long cblocks = (cgp + 4 * L - 1) / (4 * L);
    parallel_for(q.N * q.G, thread_count.load(), [&](long task, int) {
        const long g = task % q.G, n = task / q.G;
        T* image = gx + n * q.H * q.W * q.C + g * cg;
        for (long p = 0; p < q.H * q.W; ++p) std::copy(b + g * cg, b + (g + 1) * cg, image + p * q.C);
        for (long oh = 0; oh < q.OH; ++oh)
            for (long cb = 0; cb < cblocks; ++cb) {
                const long c0 = cb * 4 * L;
                const T* gr = gy + ((n * q.OH + oh) * q.OW) * q.K + g * kg;
                const T* wg = wt + g * q.kh * q.kw * kg * cgp;
                with_tile_shape((cgp - c0) / L, [&](auto v, auto rmax) {
                    input_grad_row<T, v(), rmax()>(gr, wg, image, q, cg, kg, cgp, c0, oh);
                });
            }
    });
}

// ----------------------------------------------------------------------------------- weight gradient
// gw[g, i, j, c, k] = sum_{n, oh, ow} x[n, oh*sh + i*dh - pt, ow*sw + j*dw - pl, g*Cg + c] * gy[n, oh, ow, g*Kg + k]
// A tile is R input channels times V vectors of output channels of one tap, summed over a band of output
// rows (whose output gradient stays in the L1 cache while every tap and channel tile passes over it);
// output pixels whose tap lands in the padding are left out of the sum.
// Each thread sums its share of the images into a private copy of gw; the copies are added at the end.
// Whole vectors of gy are loaded, so here gy's channels must be padded per group to Kgp (the caller
// copies gy when Kg is not a whole number of vectors): K = G * Kgp and Kg = Kgp.
template <typename T, int V> struct WeightGradTile {
    const T *x, *gy;      // x: the image's channel c0 of the group; gy: the band's first row, channel k0
    T* gw;
    const Geometry* q;
    long rows, oh0, i, j, kgp, k0;

    template <int R> void run() const {
        typedef typename Vec<T>::type vec;
        constexpr int L = lanes<T>();
        vec acc[R][V];
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] = load(gw + r * kgp + k0 + v * L);
        // the output columns whose tap j lands inside the image: 0 <= ow*sw + j*dw - pl < W
        const long off = j * q->dw - q->pl;
        const long ow_lo = off >= 0 ? 0 : (-off + q->sw - 1) / q->sw;
        const long ow_hi = std::min(q->OW, q->W - off <= 0 ? 0 : (q->W - off - 1) / q->sw + 1);
        for (long oh = 0; oh < rows; ++oh) {
            const long ih = (oh0 + oh) * q->sh - q->pt + i * q->dh;
            if (ih < 0 || ih >= q->H) continue;
            const T* xr = x + ih * q->W * q->C;
            const T* gr = gy + oh * q->OW * q->K;
            for (long ow = ow_lo; ow < ow_hi; ++ow) {
                vec gv[V];
                _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) gv[v] = load(gr + ow * q->K + v * L);
                const T* xp = xr + (ow * q->sw + off) * q->C;
                _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                    vec xb = splat(xp[r]);
                    _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] += xb * gv[v];
                }
            }
        }
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) store(gw + r * kgp + k0 + v * L, acc[r][v]);
    }
};

template <typename T, int V, int RMAX>
void weight_grad_band(const T* x, const T* gy, T* gw, const Geometry& q, long rows, long oh0, long i, long j,
                      long cg, long kgp, long k0) {
    WeightGradTile<T, V> t{x, gy, gw, &q, rows, oh0, i, j, kgp, k0};
    for_tiles<RMAX>(cg, [&](long c, int r) {
        t.x = x + c;
        t.gw = gw + c * kgp;
        with_tile<RMAX>(r, t);
    });
}

template <typename T>
void conv_weight_grad(const T* x, const T* gy, T* gw, const Geometry& q) {
    constexpr int L = lanes<T>();
    const long cg = q.C / q.G, kgp = q.K / q.G;
    const long kblocks = (kgp + 4 * L - 1) / (4 * L);
    const long size = q.G * q.kh * q.kw * cg * kgp;
    // a band of output rows whose output gradient takes about 16 KB
    const long band = std::max<long>(1, 16384 / std::max<long>(1, q.OW * q.K * long(sizeof(T))));
    const int threads = int(std::max<long>(1, std::min<long>(thread_count.load(), q.N)));
    std::vector<T> part(size_t(threads) * size, T(0));
    parallel_for(q.N, threads, [&](long n, int thread) {
        T* mine = part.data() + size_t(thread) * size;
        for (long oh0 = 0; oh0 < q.OH; oh0 += band) {
            const long rows = std::min(band, q.OH - oh0);
            for (long g = 0; g < q.G; ++g)
                for (long i = 0; i < q.kh; ++i)
                    for (long j = 0; j < q.kw; ++j)
                        for (long kb = 0; kb < kblocks; ++kb) {
                            const long k0 = kb * 4 * L;
                            const T* img = x + n * q.H * q.W * q.C + g * cg;
                            const T* gb = gy + ((n * q.OH + oh0) * q.OW) * q.K + g * kgp + k0;
                            T* wb = mine + ((g * q.kh + i) * q.kw + j) * cg * kgp;
                            with_tile_shape((kgp - k0) / L, [&](auto v, auto rmax) {
                                weight_grad_band<T, v(), rmax()>(img, gb, wb, q, rows, oh0, i, j, cg, kgp, k0);
                            });
                        }
        }
    });
    for (long e = 0; e < size; ++e) {
        T s = 0;
        for (int t = 0; t < threads; ++t) s += part[size_t(t) * size + e];
        gw[e] = s;
    }
}

// ------------------------------------------------------------------------------ small matrix products
// c (M, N) = a (M, K) @ b (K, N), on the calling thread; a and b may have any element strides (a_row,
// a_col, b_row, b_col), c is C-contiguous. minifb sends only small, narrow products here (the rule is
// cpu_conv.product's): BLAS keeps the rest. Why not BLAS for those too: NumPy's OpenBLAS spreads every
// product of more than 2^18 multiply-adds over its threads, and those threads then spin for about 0.1 s
// waiting for the next one. A classifier head's product (32 x 3136 x 10) takes tens of microseconds, so a
// network that runs one between its convolutions at every timestep left this library's pool one core
// for most of each step; and BLAS runs such narrow products far below its peak anyway (benchmarks/NOTES.md,
// "Session 16").
//
// Three ways through a product, by b's layout:
//  rows:   b's rows contiguous (b_col == 1). A register tile of R rows of c by V vectors of its columns;
//          each step along k broadcasts R numbers of a and multiplies V vectors of b's row k, as the
//          convolution's forward tile does (a matrix product is a 1x1 convolution of one-pixel images).
//          A partial last vector of columns is read from a zero-padded copy.
//  dots:   b's columns contiguous (b = w.T of a Dense layer), a's rows too, and fewer columns than a
//          vector (a classifier head): a tile of R rows by S columns of c, each a dot product summed in
//          vectors along k, then across the lanes.
//  packed: any other b: copied into zero-padded contiguous rows first, then as rows.

template <typename T, int V> struct RowsTile {
    const T* a;     // row i0 of a
    const T* b;     // row 0 of b at column n0
    T* c;           // c[i0, n0]
    long a_row, a_col, ldb, ldc, K, valid;   // valid: the columns from n0 that c has (may be < V * L)

    template <int R> void run() const {
        typedef typename Vec<T>::type vec;
        constexpr int L = lanes<T>();
        vec acc[R][V];
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] = vec{};
        for (long k = 0; k < K; ++k) {
            vec bv[V];
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) bv[v] = load(b + k * ldb + v * L);
            _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r) {
                vec ab = splat(a[r * a_row + k * a_col]);
                _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) acc[r][v] += ab * bv[v];
            }
        }
        _Pragma("GCC unroll 16") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int v = 0; v < V; ++v) {
                T* p = c + r * ldc + v * L;
                if (valid >= (v + 1) * L) store(p, acc[r][v]);
                else if (valid > v * L) store_part(p, acc[r][v], int(valid - v * L));
            }
    }
};

// rows i of c, columns n0 .. n0 + valid - 1 (at most V vectors), from b's rows (row stride ldb) at n0
template <typename T, int V, int RMAX>
void rows_block(const T* a, long a_row, long a_col, const T* b, long ldb, T* c, long M, long N, long K,
                long n0, long valid) {
    RowsTile<T, V> t{a, b, c, a_row, a_col, ldb, N, K, valid};
    for_tiles<RMAX>(M, [&](long i, int r) {
        t.a = a + i * a_row;
        t.c = c + i * N + n0;
        with_tile<RMAX>(r, t);
    });
}

template <typename T, int S> struct DotsTile {
    const T* a;     // row i0 of a
    const T* b;     // column j0 of b (contiguous along k)
    T* c;           // c[i0, j0]
    long lda, ldb, ldc, K;

    template <int R> void run() const {
        typedef typename Vec<T>::type vec;
        constexpr int L = lanes<T>();
        vec acc[R][S];
        _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int s = 0; s < S; ++s) acc[r][s] = vec{};
        long k = 0;
        for (; k + L <= K; k += L) {
            vec bv[S];
            _Pragma("GCC unroll 4") for (int s = 0; s < S; ++s) bv[s] = load(b + s * ldb + k);
            _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r) {
                vec av = load(a + r * lda + k);
                _Pragma("GCC unroll 4") for (int s = 0; s < S; ++s) acc[r][s] += av * bv[s];
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; ++r)
            _Pragma("GCC unroll 4") for (int s = 0; s < S; ++s) {
                T sum = 0;
                for (int l = 0; l < L; ++l) sum += acc[r][s][l];
                for (long kk = k; kk < K; ++kk) sum += a[r * lda + kk] * b[s * ldb + kk];
                c[r * ldc + s] = sum;
            }
    }
};

// c = a @ b with a's rows and b's columns contiguous (lda, ldb: their strides), as R x S tiles of dots
template <typename T>
void matmul_dots(const T* a, long lda, const T* b, long ldb, T* c, long M, long N, long K) {
    for (long j = 0; j < N; j += 4) {
        auto columns = [&](auto s) {
            DotsTile<T, s()> t{a, b + j * ldb, c + j, lda, ldb, N, K};
            for_tiles<4>(M, [&](long i, int r) {
                t.a = a + i * lda;
                t.c = c + i * N + j;
                with_tile<4>(r, t);
            });
        };
        using std::integral_constant;
        switch (std::min<long>(4, N - j)) {
            case 4: columns(integral_constant<int, 4>{}); break;
            case 3: columns(integral_constant<int, 3>{}); break;
            case 2: columns(integral_constant<int, 2>{}); break;
            default: columns(integral_constant<int, 1>{}); break;
        }
    }
}

template <typename T>
void matmul(const T* a, long a_row, long a_col, const T* b, long b_row, long b_col, T* c, long M, long N,
            long K) {
    constexpr int L = lanes<T>();
    if (b_col != 1 && a_col == 1 && b_row == 1 && N < L) {   // fewer columns than a vector: as dots
        matmul_dots(a, a_row, b, b_col, c, M, N, K);
        return;
    }
    std::vector<T> packed;
    long whole = N / L;   // whole vectors of columns read straight from b, when its rows are contiguous
    if (b_col != 1) {     // b = w.T, say: copied once into contiguous rows, padded to whole vectors
        const long np = (N + L - 1) / L * L;
        packed.assign(size_t(K) * np, T(0));
        for (long k0 = 0; k0 < K; k0 += L)     // in L x L blocks, so that both the reads and the writes
            for (long n0 = 0; n0 < N; n0 += L)   // of a block stay within L cache lines
                for (long n = n0; n < std::min(N, n0 + L); ++n)
                    for (long k = k0; k < std::min(K, k0 + L); ++k) packed[k * np + n] = b[k * b_row + n * b_col];
        b = packed.data();
        b_row = np;
        whole = np / L;
    }
    for (long v0 = 0; v0 < whole; v0 += 4)
        with_tile_shape(whole - v0, [&](auto v, auto rmax) {
            rows_block<T, v(), rmax()>(a, a_row, a_col, b + v0 * L, b_row, c, M, N, K, v0 * L, N - v0 * L);
        });
    if (whole * L < N) {   // the last, partial vector of b's own rows: from a zero-padded copy, so that no
        const long n0 = whole * L;   // load runs past the end of b
        std::vector<T> tail(size_t(K) * L, T(0));
        for (long k = 0; k < K; ++k) std::copy(b + k * b_row + n0, b + k * b_row + N, tail.data() + k * L);
        rows_block<T, 1, 16>(a, a_row, a_col, tail.data(), L, c, M, N, K, n0, N - n0);
    }
}

// ------------------------------------------------------------------------ the LSTM's pointwise step
// float32 only, as the CUDA kernels (kernels/lstm_cell.cu): the same math as ops/recurrent.py's
// lstm_pointwise_array and its backward, in one pass over the numbers instead of about twenty NumPy calls
// of a few microseconds each, which were most of an LSTM step's time outside its products at small batch
// sizes (benchmarks/NOTES.md, "Session 16"). The loops are written so that the compiler vectorises them,
// which is why exp and tanh are our own below: the C library's are scalar calls.

// A float's bits as an int and back (std::memcpy: the C++17 way, which compilers turn into a plain move
// and still vectorise; std::bit_cast needs C++20)
inline int float_bits(float f) {
    int i;
    std::memcpy(&i, &f, sizeof i);
    return i;
}
inline float bits_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

// e^x to about 1 ulp, for the finite range the gates need: e^x = 2^n e^r with n = round(x / ln 2) and
// |r| <= ln(2) / 2, e^r by its Taylor series to r^7 (the first term left out is below 5e-9 of the sum).
// x is clamped to [-87, 88], where 2^n stays a normal float: e^-87 and e^88 stand for 0 and infinity in
// 1 / (1 + e^x), within 1e-38. NaN stays NaN (both comparisons are false for it).
inline float exp_clamped(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    // n = round(x / ln 2): adding 1.5 * 2^23 rounds to a whole number and leaves it in the low bits of the
    // sum (with no float-to-int conversion, which the compiler would not vectorise)
    const float magic = 12582912.0f, shifted = (x == x ? x : 0.0f) * 1.44269504f + magic, n = shifted - magic;
    // r = x - n ln 2, with ln 2 split so that n * 0.693359375 is exact (Cody and Waite's reduction)
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
                    + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    return p * bits_float((float_bits(shifted) - float_bits(magic) + 127) << 23);   // times 2^n, from its bits
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_clamped(-x)); }

// tanh: its Taylor series to x^15 below |x| = 0.5 (the first term left out is below 1e-8 of the sum),
// 1 - 2 / (e^2|x| + 1) above, where the subtraction loses at most about a bit.
inline float tanh_float(float x) {
    const float a = x < 0 ? -x : x, z = x * x;
    const float series = x * (1.0f + z * (-1.0f / 3 + z * (2.0f / 15 + z * (-17.0f / 315 + z * (62.0f / 2835
                         + z * (-1382.0f / 155925 + z * (21844.0f / 6081075 + z * (-929569.0f / 638512875))))))));
    const float big = 1.0f - 2.0f / (exp_clamped(2.0f * a) + 1.0f);
    return a < 0.5f ? series : (x < 0 ? -big : big);
}

// One row of the forward: the gates' pre-activations a + b, the previous cell state c; writes the
// activated gates (gi, gf, gg, go) and h', c'. The pointers do not alias (restrict), so the loop vectorises.
void lstm_forward_row(const float* __restrict a, const float* __restrict b, const float* __restrict c,
                      float* __restrict gi, float* __restrict gf, float* __restrict gg, float* __restrict go,
                      float* __restrict h, float* __restrict cn, long H) {
    for (long j = 0; j < H; ++j) {
        const float i = sigmoid(a[j] + b[j]), f = sigmoid(a[H + j] + b[H + j]);
        const float g = tanh_float(a[2 * H + j] + b[2 * H + j]), o = sigmoid(a[3 * H + j] + b[3 * H + j]);
        const float c_new = f * c[j] + i * g;
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
        cn[j] = c_new;
        h[j] = o * tanh_float(c_new);
    }
}

// out (N, 2H) = [h' | c'], gates (N, 4H) = activated [i | f | g | o]; rs_*: row strides in numbers
void lstm_forward(const float* gi, long rs_gi, const float* gh, long rs_gh, const float* c, long rs_c,
                  float* out, float* gates, long N, long H) {
    for (long n = 0; n < N; ++n) {
        float *gt = gates + n * 4 * H, *h = out + n * 2 * H;
        lstm_forward_row(gi + n * rs_gi, gh + n * rs_gh, c + n * rs_c, gt, gt + H, gt + 2 * H, gt + 3 * H, h,
                         h + H, H);
    }
}

void lstm_backward_row(const float* __restrict dh, const float* __restrict dc, const float* __restrict gt,
                       const float* __restrict c, const float* __restrict cn, float* __restrict di,
                       float* __restrict df, float* __restrict dg, float* __restrict dout,
                       float* __restrict dcp, long H) {
    for (long j = 0; j < H; ++j) {
        const float i = gt[j], f = gt[H + j], g = gt[2 * H + j], o = gt[3 * H + j];
        const float tc = tanh_float(cn[j]);
        const float dct = dc[j] + dh[j] * o * (1.0f - tc * tc);
        di[j] = dct * g * i * (1.0f - i);
        df[j] = dct * c[j] * f * (1.0f - f);
        dg[j] = dct * i * (1.0f - g * g);
        dout[j] = dh[j] * tc * o * (1.0f - o);
        dcp[j] = dct * f;
    }
}

// dgates (N, 4H) and dc_prev (N, H) from grad (N, 2H) = [dh | dc'], the gates, c and c' (row strides rs_*)
void lstm_backward(const float* grad, long rs_grad, const float* gates, const float* c, long rs_c,
                   const float* c_new, long rs_cn, float* dgates, float* dc_prev, long N, long H) {
    for (long n = 0; n < N; ++n) {
        const float* dh = grad + n * rs_grad;
        float* dg = dgates + n * 4 * H;
        lstm_backward_row(dh, dh + H, gates + n * 4 * H, c + n * rs_c, c_new + n * rs_cn, dg, dg + H, dg + 2 * H,
                          dg + 3 * H, dc_prev + n * H, H);
    }
}

// ------------------------------------------------------------------------------ the optimiser's SGD step
// optim.SGD's rule on a parameter's numbers in one pass (the CUDA kernel sgd_update of kernels/optim.cu,
// for NumPy arrays of either dtype): with d = g + weight_decay * p, when momentum is not 0
// buf = d on the first step, else momentum * buf + (1 - dampening) * d, and d = d + momentum * buf
// (Nesterov) or buf; then p -= lr * d. NumPy takes two to five passes with temporaries for the same,
// and a dense network's parameters are megabytes that are no longer in the cache when the step comes
// (benchmarks/NOTES.md, "Session 17"). Each operation rounds as NumPy's does, so both paths give the
// same numbers: the compiler may not contract a product and a sum into one fused multiply-add here (it
// would elsewhere in this file, where that is wanted).
template <typename T>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void sgd_step(T* __restrict p, const T* __restrict g, T* __restrict buf, long n, T lr, T momentum,
              T one_minus_dampening, T weight_decay, bool nesterov, bool first) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    // the conditions are the same for every i: the compiler takes them out of the loop (as fast, measured,
    // as one loop written per case)
    for (long i = 0; i < n; ++i) {
        T d = weight_decay == T(0) ? g[i] : g[i] + weight_decay * p[i];
        if (momentum != T(0)) {
            const T b = first ? d : momentum * buf[i] + one_minus_dampening * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}

}  // namespace

#define MINIFB_GEOMETRY_ARGS long N, long H, long W, long C, long K, long G, long kh, long kw, \
    long sh, long sw, long dh, long dw, long OH, long OW, long pt, long pl
#define MINIFB_GEOMETRY Geometry{N, H, W, C, K, G, kh, kw, sh, sw, dh, dw, OH, OW, pt, pl}

#define MINIFB_CONV_ENTRY_POINTS(T, suffix)                                                              \
    extern "C" void minifb_conv_forward_##suffix(const T* x, const T* w, const T* b, T* y,              \
                                                 MINIFB_GEOMETRY_ARGS) {                                 \
        conv_forward<T>(x, w, b, y, MINIFB_GEOMETRY);                                                    \
    }                                                                                                    \
    extern "C" void minifb_conv_input_grad_##suffix(const T* gy, const T* wt, const T* b, T* gx,        \
                                                    MINIFB_GEOMETRY_ARGS) {                              \
        conv_input_grad<T>(gy, wt, b, gx, MINIFB_GEOMETRY);                                              \
    }                                                                                                    \
    extern "C" void minifb_conv_weight_grad_##suffix(const T* x, const T* gy, T* gw,                    \
                                                     MINIFB_GEOMETRY_ARGS) {                             \
        conv_weight_grad<T>(x, gy, gw, MINIFB_GEOMETRY);                                                 \
    }                                                                                                    \
    extern "C" void minifb_matmul_##suffix(const T* a, long a_row, long a_col, const T* b, long b_row,  \
                                           long b_col, T* c, long M, long N, long K) {                   \
        matmul<T>(a, a_row, a_col, b, b_row, b_col, c, M, N, K);                                         \
    }                                                                                                    \
    extern "C" void minifb_sgd_step_##suffix(T* p, const T* g, T* buf, long n, T lr, T momentum,        \
                                             T one_minus_dampening, T weight_decay, long nesterov,      \
                                             long first) {                                              \
        sgd_step<T>(p, g, buf, n, lr, momentum, one_minus_dampening, weight_decay, nesterov != 0,        \
                    first != 0);                                                                         \
    }

extern "C" void minifb_lstm_forward_f32(const float* gi, long rs_gi, const float* gh, long rs_gh, const float* c,
                                        long rs_c, float* out, float* gates, long N, long H) {
    lstm_forward(gi, rs_gi, gh, rs_gh, c, rs_c, out, gates, N, H);
}
extern "C" void minifb_lstm_backward_f32(const float* grad, long rs_grad, const float* gates, const float* c,
                                         long rs_c, const float* c_new, long rs_cn, float* dgates,
                                         float* dc_prev, long N, long H) {
    lstm_backward(grad, rs_grad, gates, c, rs_c, c_new, rs_cn, dgates, dc_prev, N, H);
}

extern "C" void minifb_conv_set_threads(long n) { thread_count.store(int(std::max<long>(1, n))); }
extern "C" long minifb_conv_threads() { return thread_count.load(); }

// One library per dtype (built on first need, so float32 users never wait for the float64 build):
// -DMINIFB_CONV_TYPE=double -DMINIFB_CONV_SUFFIX=f64 for float64, float32 by default.
#ifndef MINIFB_CONV_TYPE
#define MINIFB_CONV_TYPE float
#define MINIFB_CONV_SUFFIX f32
#endif
#define MINIFB_CONV_EXPAND(T, suffix) MINIFB_CONV_ENTRY_POINTS(T, suffix)
MINIFB_CONV_EXPAND(MINIFB_CONV_TYPE, MINIFB_CONV_SUFFIX)
