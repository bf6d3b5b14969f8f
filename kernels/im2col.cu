// im2col.cu -- the column matrix of a 2-D convolution and its adjoint, col2im, as a gather.
//
// x: (N, C, H, W) contiguous float32. Kernel kh x kw, stride (sh, sw), padding (ph, pw), dilation (dh, dw);
// OH = (H + 2 ph - dh (kh - 1) - 1) / sh + 1 and likewise OW (PyTorch's formula, floor).
// cols: (C*kh*kw, N*OH*OW), rows ordered (c, i, j), columns ordered (n, oh, ow) with ow innermost:
//   cols[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw] (0 outside).
// conv2d forward is W.reshape(C_out, -1) @ cols; conv2d's input gradient and conv_transpose2d's forward
// are col2im(W.T @ g); so these two kernels serve both convolutions.
//
// Kernels (1-D grid-stride loops, block 256)
//   im2col(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW)
//       thread per element of cols; consecutive threads write consecutive ow (coalesced writes).
//       Traffic: writes 4*C*kh*kw*N*OH*OW bytes, reads x (each pixel up to kh*kw times, mostly cached).
//   col2im(cols, x, ...same...)
//       thread per element of x: it sums the (at most kh*kw) entries of cols that came from it, so there
//       are no write conflicts and no atomics. Traffic: reads cols once, writes x once.
// NumPy reference: minifb.kernel_refs.im2col_ref / col2im_ref.
#ifndef __CUDACC__
#include "cuda_emu.h"
#endif
#include "common.h"

extern "C" __global__ void im2col(const float* __restrict__ x, float* __restrict__ cols, int N, int C, int H,
                                  int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                                  int OW) {
    const long long L = (long long)N * OH * OW;           // columns
    const long long total = (long long)C * kh * kw * L;   // elements of cols
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const long long col = e % L;
        const long long row = e / L;
        const int ow = (int)(col % OW);
        const int oh = (int)((col / OW) % OH);
        const int n = (int)(col / ((long long)OW * OH));
        const int j = (int)(row % kw);
        const int i = (int)((row / kw) % kh);
        const int c = (int)(row / ((long long)kw * kh));
        const int hh = oh * sh - ph + i * dh;
        const int ww = ow * sw - pw + j * dw;
        float v = 0.0f;
        if (hh >= 0 && hh < H && ww >= 0 && ww < W) v = x[(((long long)n * C + c) * H + hh) * W + ww];
        cols[e] = v;
    }
}

extern "C" __global__ void col2im(const float* __restrict__ cols, float* __restrict__ x, int N, int C, int H,
                                  int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw, int OH,
                                  int OW) {
    const long long L = (long long)N * OH * OW;
    const long long total = (long long)N * C * H * W;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const int ww = (int)(e % W);
        const int hh = (int)((e / W) % H);
        const int c = (int)((e / ((long long)W * H)) % C);
        const int n = (int)(e / ((long long)W * H * C));
        float acc = 0.0f;
        for (int i = 0; i < kh; ++i) {
            const int th = hh + ph - i * dh;           // = oh * sh
            if (th < 0 || th % sh != 0) continue;
            const int oh = th / sh;
            if (oh >= OH) continue;
            for (int j = 0; j < kw; ++j) {
                const int tw = ww + pw - j * dw;       // = ow * sw
                if (tw < 0 || tw % sw != 0) continue;
                const int ow = tw / sw;
                if (ow >= OW) continue;
                const long long row = ((long long)c * kh + i) * kw + j;
                acc += cols[row * L + ((long long)n * OH + oh) * OW + ow];
            }
        }
        x[e] = acc;
    }
}
