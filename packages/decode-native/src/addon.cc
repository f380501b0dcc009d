// Node-API binding of a native batch-1 Llama decode step over int8 per-output-channel weights (the
// runtime's "int8c" format, quantize.ts `quantizePerChannel`): one token of one sequence through the
// whole model (embedding, RMSNorm, fused q/k/v, RoPE, grouped-query attention over the sequence's KV
// cache, o-proj, SwiGLU MLP, final norm, LM head), reading and appending into the JS-side KV buffers
// the runtime keeps, so a sequence moves freely between these steps and onnxruntime's batched ones.
//
// Why hand-written: onnxruntime-node can neither load custom-op libraries nor share prepacked
// weights, and its DynamicQuantizeMatMul chain costs ~1.5x a plain read of the int8 bytes per step at
// batch 1 (bench/RESULTS.md, "A native b=1 int8 GEMV, measured"); no npm package runs a Llama step
// over our weights and our KV layout. Plain Node-API (no node-addon-api): no dependencies, ABI-stable.
//
// Numerics follow the onnxruntime graph (graph.ts) so greedy decoding agrees with the int8c session:
// activations are quantized per matmul to uint8 with a zero point exactly as DynamicQuantizeLinear
// does, accumulated exactly in int32 (u8 x s8), scaled by activation scale x channel scale.
// The integer dot products have three kernels (AVX-512 VNNI, AVX2, portable scalar) picked at run
// time from the CPU (or forced by `isa`); they give bit-identical int32 sums, and all float code is
// compiled once for the baseline ISA with -ffp-contract=off, so every kernel gives the same logits.
#include <node_api.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace {

enum class Isa { scalar = 0, avx2 = 1, avx512vnni = 2 };
const char* isa_name(Isa isa) {
  return isa == Isa::avx512vnni ? "avx512vnni" : isa == Isa::avx2 ? "avx2" : "scalar";
}
bool isa_supported(Isa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case Isa::avx512vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
    case Isa::avx2:
      return __builtin_cpu_supports("avx2");
    default:
      return true;
  }
}

// ---- integer dot products: acc[r] = sum_i a[i] * w[r, i], a uint8, w int8, k a multiple of 64 ----

void dots_scalar(const uint8_t* a, const int8_t* w, int k, int r0, int r1, int32_t* acc) {
  for (int r = r0; r < r1; r++) {
    const int8_t* row = w + (size_t)r * k;
    int32_t s = 0;
    for (int i = 0; i < k; i++) s += (int32_t)a[i] * row[i];
    acc[r] = s;
  }
}

__attribute__((target("avx2"))) void dots_avx2(const uint8_t* a, const int8_t* w, int k, int r0, int r1,
                                               int32_t* acc) {
  // u8 and s8 widened to s16, multiplied and pair-summed to s32 by vpmaddwd: exact (maddubs would
  // saturate u8*s8 pairs at s16).
  for (int r = r0; r < r1; r++) {
    const int8_t* row = w + (size_t)r * k;
    __m256i c0 = _mm256_setzero_si256(), c1 = _mm256_setzero_si256();
    for (int i = 0; i < k; i += 32) {
      const __m256i a0 = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i*)(a + i)));
      const __m256i a1 = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i*)(a + i + 16)));
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(row + i)));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(row + i + 16)));
      c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(a0, w0));
      c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(a1, w1));
    }
    const __m256i c = _mm256_add_epi32(c0, c1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    acc[r] = _mm_cvtsi128_si32(s);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void dots_vnni(const uint8_t* a, const int8_t* w, int k,
                                                                       int r0, int r1, int32_t* acc) {
  // Rows in memory order, one accumulator each (bench/gemv.cpp: this streams at the plain read's rate;
  // interleaving rows measured slower).
  for (int r = r0; r < r1; r++) {
    const int8_t* row = w + (size_t)r * k;
    __m512i c = _mm512_setzero_si512();
    for (int i = 0; i < k; i += 64)
      c = _mm512_dpbusd_epi32(c, _mm512_load_si512(a + i), _mm512_loadu_si512(row + i));
    acc[r] = _mm512_reduce_add_epi32(c);
  }
}

using DotFn = void (*)(const uint8_t*, const int8_t*, int, int, int, int32_t*);
DotFn dot_fn(Isa isa) {
  return isa == Isa::avx512vnni ? dots_vnni : isa == Isa::avx2 ? dots_avx2 : dots_scalar;
}

// ---- a small persistent pool: the calling thread plus n-1 workers that sleep on a condition variable
// between jobs (no spinning: on a shared CPU a spinning worker takes the core the other thread needs;
// see RuntimeOptions.spinWait in runtime.ts) ----
class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int t = 1; t < n; t++) threads_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return n_; }
  // Runs job(t, n) on every thread t of the pool and returns when all are done.
  void run(const std::function<void(int, int)>& job) {
    if (n_ == 1) return job(0, 1);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &job;
      pending_ = n_ - 1;
      gen_++;
    }
    wake_.notify_all();
    job(0, n_);
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  void loop(int t) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int, int)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        job = job_;
      }
      (*job)(t, n_);
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
  int n_;
  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  uint64_t gen_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using Aligned = std::unique_ptr<T[], AlignedFree>;
template <class T>
Aligned<T> aligned(size_t n) {
  void* p = std::aligned_alloc(64, std::max<size_t>(64, (n * sizeof(T) + 63) & ~(size_t)63));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, (n * sizeof(T) + 63) & ~(size_t)63);
  return Aligned<T>(static_cast<T*>(p));
}

// One linear layer: y = x . W^T, W [rows, cols] stored row-major with rows padded to kp (a multiple
// of 64) with zeros, so every kernel runs whole 64-byte chunks.
struct Linear {
  int rows = 0, cols = 0, kp = 0;
  int8_t* w = nullptr;  // inside the model's arena
  std::vector<float> scale;
  std::vector<int32_t> sumw;  // per row: the zero point's correction, as MLAS prepacks it
};

struct Config {
  int hidden, layers, heads, kv_heads, head_dim, inter, vocab, max_pos;
  float eps;
  double rope_theta;
};

// The int8 weights of all linear layers, one mapping in execution order (each matrix 64-byte aligned):
// the GEMVs stream one region front to back, and with `huge` it is backed by 2 MB transparent huge
// pages where the kernel allows (madvise), so the stream crosses ~70 page boundaries per token
// instead of ~33,000.
struct Arena {
  int8_t* base = nullptr;
  size_t mapped = 0;
  int8_t* p = nullptr;
  ~Arena() {
    if (base) munmap(base, mapped);
  }
  void map(size_t bytes, bool huge) {
    const size_t two_mb = (size_t)2 << 20;
    mapped = ((bytes + two_mb - 1) & ~(two_mb - 1)) + two_mb;
    void* q = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) throw std::bad_alloc();
    base = static_cast<int8_t*>(q);
    p = reinterpret_cast<int8_t*>(((uintptr_t)base + two_mb - 1) & ~(uintptr_t)(two_mb - 1));
#ifdef MADV_HUGEPAGE
    if (huge) madvise(p, mapped - (size_t)(p - base), MADV_HUGEPAGE);
#endif
  }
};

struct AttnKernels {
  void (*scores)(const float*, int, int, const float*, int, int, int, float*);
  void (*weighted)(const float*, int, const float*, int, int, int, float*);
};

struct Model {
  Config c;
  Isa isa;
  DotFn dots;
  AttnKernels attn;
  std::unique_ptr<Pool> pool;
  // The caller's f32 embedding table [vocab, hidden] (the array the graph's Gather reads from too),
  // held by reference, not copied: its pointer is looked up (and its length checked) every step.
  napi_ref embed_ref = nullptr;
  const float* embed = nullptr;
  // Or a read-only mapping of a file holding it (mapEmbedding): only the rows read become resident.
  void* embed_map = nullptr;
  size_t embed_map_bytes = 0;
  ~Model() {
    if (embed_map) munmap(embed_map, embed_map_bytes);
  }
  std::vector<std::vector<float>> in_norm, post_norm;
  std::vector<float> final_norm;
  std::vector<Linear> lin;  // per layer: qkv, o, gate+up, down; then the head
  Arena arena;
  std::vector<size_t> at;  // each linear's offset in the arena
  std::vector<float> cos_q, sin_q, cos_k, sin_k;  // [max_pos, D/2]; the query's carry 1/sqrt(D)
  // scratch
  std::vector<float> x, h, qkv, ctx, tmp, gu, act, scores;
  Aligned<uint8_t> aq;
  std::vector<int32_t> acc;
  size_t loaded = 0;  // linear layers set (a step needs all of them)
};

// DynamicQuantizeLinear (what DynamicQuantizeMatMul runs on its input): range widened to include 0,
// scale = range / 255, zero point = round(-min / scale), q = saturate(round(x / scale) + zp).
// Written so the compiler vectorizes it for the baseline ISA (min/max in 8 lanes; round-half-even by the
// 1.5 * 2^23 trick, exact for |v| < 2^22 under the default rounding mode, where std::nearbyint is a libm
// call without SSE4.1): the same bytes as the plain loop, on every CPU.
inline float round_even(float v) {
  const float magic = 12582912.f;
  return (v + magic) - magic;
}
void quantize(const float* x, int k, uint8_t* q, float* scale, int32_t* zp) {
  float lo[8] = {0, 0, 0, 0, 0, 0, 0, 0}, hi[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= k; i += 8)
    for (int j = 0; j < 8; j++) {
      lo[j] = x[i + j] < lo[j] ? x[i + j] : lo[j];
      hi[j] = x[i + j] > hi[j] ? x[i + j] : hi[j];
    }
  for (; i < k; i++) lo[0] = std::min(lo[0], x[i]), hi[0] = std::max(hi[0], x[i]);
  float mn = 0, mx = 0;
  for (int j = 0; j < 8; j++) mn = std::min(mn, lo[j]), mx = std::max(mx, hi[j]);
  float s = (mx - mn) / 255.f;
  if (s == 0) s = 1;
  const float z = round_even(std::min(255.f, std::max(0.f, -mn / s)));
  for (i = 0; i < k; i++) {
    const float v = round_even(x[i] / s) + z;
    q[i] = (uint8_t)(int)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
  }
  *scale = s;
  *zp = (int32_t)z;
}

// y = x . W^T (rows split across the pool in blocks of 16).
void linear(Model& m, const Linear& L, const float* x, float* y) {
  float as;
  int32_t zp;
  quantize(x, L.cols, m.aq.get(), &as, &zp);
  std::memset(m.aq.get() + L.cols, 0, L.kp - L.cols);
  const uint8_t* a = m.aq.get();
  int32_t* acc = m.acc.data();
  m.pool->run([&](int t, int nt) {
    const int per = ((L.rows + nt - 1) / nt + 15) & ~15;
    const int r0 = std::min(L.rows, t * per), r1 = std::min(L.rows, r0 + per);
    m.dots(a, L.w, L.kp, r0, r1, acc);
    for (int r = r0; r < r1; r++) y[r] = (float)(acc[r] - zp * L.sumw[r]) * (as * L.scale[r]);
  });
}

void rms_norm(const float* x, const float* w, int n, float eps, float* y) {
  double ss = 0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  const float inv = (float)(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

// Dot product in 8 interleaved partial sums: a fixed summation order (the same on every CPU) that the
// compiler can still vectorize.
float dot(const float* a, const float* b, int n) {
  float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) p[j] += a[i + j] * b[i + j];
  float s = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// rotate_half RoPE (HF Llama; the graph's RotaryEmbedding with interleaved 0) of `heads` heads in place.
void rope(float* v, int heads, int d, const float* cs, const float* sn) {
  const int half = d / 2;
  for (int h = 0; h < heads; h++) {
    float* x = v + h * d;
    for (int i = 0; i < half; i++) {
      const float x1 = x[i], x2 = x[i + half];
      x[i] = x1 * cs[i] - x2 * sn[i];
      x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
  }
}

// ---- attention of one token over the cached keys and values (grouped-query: query head h reads KV
// head h / G) ----
// The summation order is the portable code's (scores: dot()'s 8 partial sums and its reduction tree;
// the weighted sum of V: position by position, o += p * v with p = exp(s - max) * (1 / sum)); the AVX2
// and AVX-512 kernels do the same adds in the same order — one lane per partial sum, resp. per output
// element, mul then add, never FMA — so every kernel gives the same bits (and the same as the plain
// loops this replaced). Softmax (max, exp, sum) is shared code. The SIMD kernels read the cached rows
// in memory order and prefetch ~24 KB ahead: the hardware prefetchers alone left the scores at a third
// of the weights' streaming rate (the KV of a long context does not fit the caches: 2.4 MB a layer for
// SmolLM at 1,536 positions).
constexpr int kPrefetchBytes = 24 << 10;
inline int prefetch_rows(int W) { return (kPrefetchBytes + W * 4 - 1) / (W * 4); }

// Scores of the query heads q [heads, D] against positions 0..n-1 of the keys K ([n, kvH*D]):
// sc[h*n + j]. Each cached row is read once, front to back.
void scores_scalar(const float* q, int heads, int G, const float* K, int W, int D, int n, float* sc) {
  for (int j = 0; j < n; j++) {
    const float* kj = K + (size_t)j * W;
    for (int h = 0; h < heads; h++) sc[(size_t)h * n + j] = dot(q + h * D, kj + (h / G) * D, D);
  }
}

// o[h] = sum_j p[h*n + j] * V[j] over the positions in order, for the G heads sharing the KV head whose
// columns start at V (o [G, D]).
void weighted_scalar(const float* p, int G, const float* V, int W, int D, int n, float* o) {
  std::fill(o, o + (size_t)G * D, 0.f);
  for (int j = 0; j < n; j++) {
    const float* vj = V + (size_t)j * W;
    for (int h = 0; h < G; h++) {
      const float ph = p[(size_t)h * n + j];
      float* oh = o + h * D;
      for (int i = 0; i < D; i++) oh[i] += ph * vj[i];
    }
  }
}

// 8 positions at a time (8 whole rows: one contiguous block), every head over them while they are in
// L1: one register of dot()'s 8 partial sums per position, then dot()'s tree for the 8 positions at
// once — lanes (i, i+4) added by a 128-bit permute, then two rounds of horizontal adds, which add
// ((p0+p4)+(p1+p5)) + ((p2+p6)+(p3+p7)) as dot() does and leave the 8 scores in position order.
// Needs D % 8 == 0.
__attribute__((target("avx2"))) void scores_avx2(const float* q, int heads, int G, const float* K, int W, int D,
                                                 int n, float* sc) {
  const int ahead = prefetch_rows(W);
  int j0 = 0;
  for (; j0 + 8 <= n; j0 += 8) {
    const float* kb = K + (size_t)j0 * W;
    if (j0 + ahead + 8 <= n)
      for (int off = 0; off < 8 * W; off += 16) _mm_prefetch((const char*)(kb + (size_t)ahead * W + off), _MM_HINT_T0);
    // KV head by KV head, then its G query heads (h / G in the loop cost an integer division per head).
    for (int g = 0, h = 0; g < heads / G; g++) {
      const float* kh = kb + g * D;
      for (int e = 0; e < G; e++, h++) {
        const float* qh = q + h * D;
        __m256 a[8];
        for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_ps();
        for (int c = 0; c < D; c += 8) {
          const __m256 qc = _mm256_loadu_ps(qh + c);
          for (int r = 0; r < 8; r++)
            a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(qc, _mm256_loadu_ps(kh + (size_t)r * W + c)));
        }
        __m256 x[4];
        for (int r = 0; r < 4; r++)
          x[r] = _mm256_add_ps(_mm256_permute2f128_ps(a[r], a[r + 4], 0x20),
                               _mm256_permute2f128_ps(a[r], a[r + 4], 0x31));
        _mm256_storeu_ps(sc + (size_t)h * n + j0,
                         _mm256_hadd_ps(_mm256_hadd_ps(x[0], x[1]), _mm256_hadd_ps(x[2], x[3])));
      }
    }
  }
  // Explicit: GCC left the upper halves dirty on an exit path, and the baseline (SSE) code after it then
  // ran ~2.5x slower (the softmax's expf most of all: 58 vs 23 CPU ms per SmolLM step at 1,536 positions).
  _mm256_zeroupper();
  for (; j0 < n; j0++) {
    const float* kj = K + (size_t)j0 * W;
    for (int h = 0; h < heads; h++) sc[(size_t)h * n + j0] = dot(q + h * D, kj + (h / G) * D, D);
  }
}

// The weighted sum, NH heads x NV vectors of output columns held in registers over all positions.
template <int NH, int NV>
__attribute__((target("avx2"))) void weighted_avx2_block(const float* p, int n, const float* V, int W, int D,
                                                         float* o) {
  const int ahead = prefetch_rows(W);
  __m256 acc[NH][NV];
  for (int h = 0; h < NH; h++)
    for (int v = 0; v < NV; v++) acc[h][v] = _mm256_setzero_ps();
  for (int j = 0; j < n; j++) {
    const float* vj = V + (size_t)j * W;
    if (j + ahead < n)
      for (int v = 0; v < NV; v += 2) _mm_prefetch((const char*)(vj + (size_t)ahead * W + v * 8), _MM_HINT_T0);
    __m256 vv[NV];
    for (int v = 0; v < NV; v++) vv[v] = _mm256_loadu_ps(vj + v * 8);
    for (int h = 0; h < NH; h++) {
      const __m256 ph = _mm256_set1_ps(p[(size_t)h * n + j]);
      for (int v = 0; v < NV; v++) acc[h][v] = _mm256_add_ps(acc[h][v], _mm256_mul_ps(ph, vv[v]));
    }
  }
  for (int h = 0; h < NH; h++)
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(o + (size_t)h * D + v * 8, acc[h][v]);
  _mm256_zeroupper();
}

template <int NV>
__attribute__((target("avx2"))) void weighted_avx2_heads(const float* p, int G, int n, const float* V, int W,
                                                         int D, float* o) {
  int h = 0;
  for (; h + 3 <= G; h += 3) weighted_avx2_block<3, NV>(p + (size_t)h * n, n, V, W, D, o + h * D);
  if (G - h == 2) weighted_avx2_block<2, NV>(p + (size_t)h * n, n, V, W, D, o + h * D);
  if (G - h == 1) weighted_avx2_block<1, NV>(p + (size_t)h * n, n, V, W, D, o + h * D);
}

// Columns in blocks of 32 (4 registers a head, up to 3 heads: 12 of AVX2's 16). Needs D % 8 == 0.
__attribute__((target("avx2"))) void weighted_avx2(const float* p, int G, const float* V, int W, int D, int n,
                                                   float* o) {
  int d = 0;
  for (; d + 32 <= D; d += 32) weighted_avx2_heads<4>(p, G, n, V + d, W, D, o + d);
  switch ((D - d) / 8) {
    case 3: weighted_avx2_heads<3>(p, G, n, V + d, W, D, o + d); break;
    case 2: weighted_avx2_heads<2>(p, G, n, V + d, W, D, o + d); break;
    case 1: weighted_avx2_heads<1>(p, G, n, V + d, W, D, o + d); break;
    default: break;
  }
}

template <int NH, int NV>
__attribute__((target("avx512f"))) void weighted_avx512_block(const float* p, int n, const float* V, int W,
                                                             int D, float* o) {
  const int ahead = prefetch_rows(W);
  __m512 acc[NH][NV];
  for (int h = 0; h < NH; h++)
    for (int v = 0; v < NV; v++) acc[h][v] = _mm512_setzero_ps();
  for (int j = 0; j < n; j++) {
    const float* vj = V + (size_t)j * W;
    if (j + ahead < n)
      for (int v = 0; v < NV; v++) _mm_prefetch((const char*)(vj + (size_t)ahead * W + v * 16), _MM_HINT_T0);
    __m512 vv[NV];
    for (int v = 0; v < NV; v++) vv[v] = _mm512_loadu_ps(vj + v * 16);
    for (int h = 0; h < NH; h++) {
      const __m512 ph = _mm512_set1_ps(p[(size_t)h * n + j]);
      for (int v = 0; v < NV; v++) acc[h][v] = _mm512_add_ps(acc[h][v], _mm512_mul_ps(ph, vv[v]));
    }
  }
  for (int h = 0; h < NH; h++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(o + (size_t)h * D + v * 16, acc[h][v]);
  _mm256_zeroupper();
}

template <int NV>
__attribute__((target("avx512f"))) void weighted_avx512_heads(const float* p, int G, int n, const float* V,
                                                             int W, int D, float* o) {
  int h = 0;
  for (; h + 4 <= G; h += 4) weighted_avx512_block<4, NV>(p + (size_t)h * n, n, V, W, D, o + h * D);
  switch (G - h) {
    case 3: weighted_avx512_block<3, NV>(p + (size_t)h * n, n, V, W, D, o + h * D); break;
    case 2: weighted_avx512_block<2, NV>(p + (size_t)h * n, n, V, W, D, o + h * D); break;
    case 1: weighted_avx512_block<1, NV>(p + (size_t)h * n, n, V, W, D, o + h * D); break;
    default: break;
  }
}

// Columns in blocks of 64 (4 registers a head, up to 4 heads: 16 of 32). Needs D % 16 == 0.
__attribute__((target("avx512f"))) void weighted_avx512(const float* p, int G, const float* V, int W, int D,
                                                       int n, float* o) {
  int d = 0;
  for (; d + 64 <= D; d += 64) weighted_avx512_heads<4>(p, G, n, V + d, W, D, o + d);
  switch ((D - d) / 16) {
    case 3: weighted_avx512_heads<3>(p, G, n, V + d, W, D, o + d); break;
    case 2: weighted_avx512_heads<2>(p, G, n, V + d, W, D, o + d); break;
    case 1: weighted_avx512_heads<1>(p, G, n, V + d, W, D, o + d); break;
    default: break;
  }
}

// The scores for the AVX-512 kernel stay AVX2's: dot()'s 8-lane order fills one 256-bit register per
// position, and the loop waits on memory, not on arithmetic. Other head sizes than multiples of 8
// (resp. 16) run the portable code on every CPU.
AttnKernels attn_kernels(Isa isa, int D) {
  if (isa == Isa::avx512vnni && D % 16 == 0) return {scores_avx2, weighted_avx512};
  if (isa != Isa::scalar && D % 8 == 0) return {scores_avx2, weighted_avx2};
  return {scores_scalar, weighted_scalar};
}

// Softmax over the n scores of each of the `rows` heads in place: p = exp(s - max) * (1 / sum).
void softmax_rows(float* sc, int rows, int n) {
  for (int h = 0; h < rows; h++) {
    float* s = sc + (size_t)h * n;
    // The max in 8 lanes, so the compiler vectorizes it (a max is exact: any order gives the same value,
    // up to the sign of a zero, which s - max does not see).
    float lane[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int i = 0; i < 8; i++) lane[i] = std::max(lane[i], s[j + i]);
    float mx = -INFINITY;
    for (; j < n; j++) mx = std::max(mx, s[j]);
    for (int i = 0; i < 8; i++) mx = std::max(mx, lane[i]);
    float sum = 0;
    for (j = 0; j < n; j++) sum += (s[j] = std::exp(s[j] - mx));
    const float inv = 1.f / sum;
    for (j = 0; j < n; j++) s[j] *= inv;
  }
}

// ctx [heads, D] = attention of q [heads, D] over positions 0..n-1 of K and V ([n, kvH*D]); sc: [heads, n].
void attention(const Model& m, const float* q, const float* K, const float* V, int n, float* sc, float* ctx) {
  const Config& c = m.c;
  const int D = c.head_dim, W = c.kv_heads * D, G = c.heads / c.kv_heads;
  m.attn.scores(q, c.heads, G, K, W, D, n, sc);
  softmax_rows(sc, c.heads, n);
  for (int g = 0; g < c.kv_heads; g++)
    m.attn.weighted(sc + (size_t)g * G * n, G, V + (size_t)g * D, W, D, n, ctx + (size_t)g * G * D);
}

// A LoRA adapter for one step (the runtime's slot layout): per layer and targeted module, A [in, rank]
// and scale*B [rank, out]; delta = (x . A) . B added to the module's base output, in f32 as the graph's
// MatMuls do. Modules: 0..6 = q, k, v, o, gate, up, down.
struct Adapter {
  int rank = 0;
  int per_layer = 0;         // targeted modules
  int slot_of[7];            // module -> index among the targeted, or -1
  std::vector<const float*> a, b;  // [layer * per_layer + index]
};

void lora_delta(const Adapter* ad, int layer, int module, const float* x, int in, float* y, int out) {
  if (!ad || ad->slot_of[module] < 0) return;
  const size_t at = (size_t)layer * ad->per_layer + ad->slot_of[module];
  const float* A = ad->a[at];
  const float* B = ad->b[at];
  const int r = ad->rank;
  float t[256];
  std::fill(t, t + r, 0.f);
  for (int i = 0; i < in; i++) {
    const float xi = x[i];
    const float* row = A + (size_t)i * r;
    for (int k = 0; k < r; k++) t[k] += xi * row[k];
  }
  for (int k = 0; k < r; k++) {
    const float tk = t[k];
    const float* row = B + (size_t)k * out;
    for (int j = 0; j < out; j++) y[j] += tk * row[j];
  }
}

// One token at position `pos`: appends its keys and values at column pos of keys[l] / values[l]
// ([>= pos+1, kvH*D] each; columns 0..pos-1 hold the past) and writes the logits.
void step(Model& m, int token, int pos, float* const* keys, float* const* values, float* logits, const Adapter* ad) {
  const Config& c = m.c;
  const int H = c.hidden, D = c.head_dim, W = c.kv_heads * D, Q = c.heads * D;
  float* x = m.x.data();
  std::memcpy(x, m.embed + (size_t)token * H, H * sizeof(float));
  float* h = m.h.data();
  rms_norm(x, m.in_norm[0].data(), H, c.eps, h);
  const size_t rope_at = (size_t)pos * (D / 2);
  const int n = pos + 1;
  for (int l = 0; l < c.layers; l++) {
    const Linear* L = &m.lin[(size_t)l * 4];
    float* qkv = m.qkv.data();
    linear(m, L[0], h, qkv);
    float* q = qkv;
    float* k = qkv + Q;
    float* v = qkv + Q + W;
    lora_delta(ad, l, 0, h, H, q, Q);
    lora_delta(ad, l, 1, h, H, k, W);
    lora_delta(ad, l, 2, h, H, v, W);
    rope(q, c.heads, D, m.cos_q.data() + rope_at, m.sin_q.data() + rope_at);
    rope(k, c.kv_heads, D, m.cos_k.data() + rope_at, m.sin_k.data() + rope_at);
    float* K = keys[l];
    float* V = values[l];
    std::memcpy(K + (size_t)pos * W, k, W * sizeof(float));
    std::memcpy(V + (size_t)pos * W, v, W * sizeof(float));
    float* ctx = m.ctx.data();
    attention(m, q, K, V, n, m.scores.data(), ctx);
    float* tmp = m.tmp.data();
    linear(m, L[1], ctx, tmp);
    lora_delta(ad, l, 3, ctx, Q, tmp, H);
    for (int i = 0; i < H; i++) x[i] += tmp[i];
    rms_norm(x, m.post_norm[l].data(), H, c.eps, h);
    float* gu = m.gu.data();
    linear(m, L[2], h, gu);
    float* act = m.act.data();
    const int I = c.inter;
    lora_delta(ad, l, 4, h, H, gu, I);
    lora_delta(ad, l, 5, h, H, gu + I, I);
    for (int i = 0; i < I; i++) {
      const float g = gu[i];
      act[i] = g / (1.f + std::exp(-g)) * gu[I + i];
    }
    linear(m, L[3], act, tmp);
    lora_delta(ad, l, 6, act, I, tmp, H);
    for (int i = 0; i < H; i++) x[i] += tmp[i];
    rms_norm(x, l + 1 < c.layers ? m.in_norm[l + 1].data() : m.final_norm.data(), H, c.eps, h);
  }
  linear(m, m.lin.back(), h, logits);
}

// ---- Node-API plumbing ----

struct Fail {
  const char* code;
  std::string message;
  bool range;
};

// A failed Node-API call inside a callback: thrown as Error (not a caller's mistake).
void ok(napi_status status, const char* what) {
  if (status != napi_ok) throw Fail{"ERR_DECODE_NAPI", std::string("Node-API call failed: ") + what, false};
}

const napi_type_tag kModelTag = {0x6f6c64656e617469ULL, 0x7665646563303031ULL};

napi_value throw_fail(napi_env env, const Fail& f) {
  if (std::strcmp(f.code, "ERR_DECODE_NAPI") == 0)
    napi_throw_error(env, f.code, f.message.c_str());
  else if (f.range)
    napi_throw_range_error(env, f.code, f.message.c_str());
  else
    napi_throw_type_error(env, f.code, f.message.c_str());
  return nullptr;
}

napi_value get(napi_env env, napi_value obj, const char* key) {
  napi_value v = nullptr;
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
    throw Fail{"ERR_DECODE_ARGS", std::string("missing property ") + key, false};
  napi_get_named_property(env, obj, key, &v);
  return v;
}

double number(napi_env env, napi_value v, const char* what) {
  napi_valuetype t;
  double d = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok)
    throw Fail{"ERR_DECODE_ARGS", std::string(what) + " must be a number", false};
  return d;
}

int integer(napi_env env, napi_value v, const char* what, int lo, int hi) {
  const double d = number(env, v, what);
  if (!(d >= lo && d <= hi) || d != std::floor(d))
    throw Fail{"ERR_DECODE_ARGS",
               std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
               true};
  return (int)d;
}

// The typed array `v` of type `want` (else a TypeError naming `what`); its length in *len.
void* typed_data(napi_env env, napi_value v, napi_typedarray_type want, const char* what, size_t* len) {
  bool is = false;
  napi_typedarray_type type;
  size_t offset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, len, &data, &buffer, &offset) != napi_ok || type != want)
    throw Fail{"ERR_DECODE_ARGS",
               std::string(what) + (want == napi_float32_array ? " must be a Float32Array" : " must be an Int8Array"),
               false};
  return data;
}

// A typed array of exactly `length` elements.
template <class T>
T* typed(napi_env env, napi_value v, napi_typedarray_type want, size_t length, const char* what) {
  size_t len = 0;
  void* data = typed_data(env, v, want, what, &len);
  if (len != length)
    throw Fail{"ERR_DECODE_ARGS",
               std::string(what) + " has " + std::to_string(len) + " elements, expected " + std::to_string(length),
               true};
  return static_cast<T*>(data);
}

// A Float32Array of at least `min` elements (a KV buffer with room for the step's column).
float* floats_at_least(napi_env env, napi_value v, size_t min, const char* what) {
  size_t len = 0;
  void* data = typed_data(env, v, napi_float32_array, what, &len);
  if (len < min)
    throw Fail{"ERR_DECODE_KV",
               std::string(what) + " has room for " + std::to_string(len) + " floats, the step needs " +
                   std::to_string(min),
               true};
  return static_cast<float*>(data);
}

napi_value element(napi_env env, napi_value arr, uint32_t i, uint32_t want, const char* what) {
  bool is = false;
  uint32_t n = 0;
  if (napi_is_array(env, arr, &is) != napi_ok || !is || napi_get_array_length(env, arr, &n) != napi_ok)
    throw Fail{"ERR_DECODE_ARGS", std::string(what) + " must be an array", false};
  if (n != want)
    throw Fail{"ERR_DECODE_ARGS",
               std::string(what) + " has " + std::to_string(n) + " entries, expected " + std::to_string(want), true};
  napi_value v;
  napi_get_element(env, arr, i, &v);
  return v;
}

// { rank, modules: number[] (0..6, each once), a: Float32Array[], b: Float32Array[] } — a[l * modules.length
// + i] is module i's A [in, rank] in layer l, b the same module's scale*B [rank, out]. Only pointers are
// kept: the arrays must stay alive (and unchanged) for the call.
void load_adapter(napi_env env, napi_value spec, const Config& c, Adapter& ad) {
  ad.rank = integer(env, get(env, spec, "rank"), "adapter.rank", 1, 256);
  napi_value mods = get(env, spec, "modules");
  bool is = false;
  uint32_t n = 0;
  if (napi_is_array(env, mods, &is) != napi_ok || !is || napi_get_array_length(env, mods, &n) != napi_ok ||
      n < 1 || n > 7)
    throw Fail{"ERR_DECODE_ADAPTER", "adapter.modules must be an array of 1-7 module indices", false};
  std::fill(ad.slot_of, ad.slot_of + 7, -1);
  ad.per_layer = (int)n;
  const int D = c.head_dim, Q = c.heads * D, W = c.kv_heads * D, H = c.hidden, I = c.inter;
  const int in_of[7] = {H, H, H, Q, H, H, I}, out_of[7] = {Q, W, W, H, I, I, H};
  std::vector<int> order(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    ok(napi_get_element(env, mods, i, &v), "napi_get_element");
    const int mod = integer(env, v, "adapter.modules[i]", 0, 6);
    if (ad.slot_of[mod] >= 0) throw Fail{"ERR_DECODE_ADAPTER", "adapter.modules lists a module twice", true};
    ad.slot_of[mod] = (int)i;
    order[i] = mod;
  }
  const uint32_t total = (uint32_t)c.layers * n;
  napi_value as = get(env, spec, "a"), bs = get(env, spec, "b");
  ad.a.resize(total), ad.b.resize(total);
  for (uint32_t j = 0; j < total; j++) {
    const int mod = order[j % n];
    ad.a[j] = typed<float>(env, element(env, as, j, total, "adapter.a"), napi_float32_array,
                           (size_t)in_of[mod] * ad.rank, "adapter.a[i]");
    ad.b[j] = typed<float>(env, element(env, bs, j, total, "adapter.b"), napi_float32_array,
                           (size_t)ad.rank * out_of[mod], "adapter.b[i]");
  }
}

// A linear layer from quantizePerChannel's output: data Int8Array [cols, rows] (MatMul's B), scales [rows].
void load_linear(napi_env env, napi_value spec, int rows, int cols, Linear& L, const char* what, int8_t* dst) {
  const int r = integer(env, get(env, spec, "rows"), "rows", 1, 1 << 24);
  const int k = integer(env, get(env, spec, "cols"), "cols", 1, 1 << 20);
  if (r != rows || k != cols)
    throw Fail{"ERR_DECODE_ARGS",
               std::string(what) + " is [" + std::to_string(r) + ", " + std::to_string(k) + "], expected [" +
                   std::to_string(rows) + ", " + std::to_string(cols) + "]",
               true};
  const int8_t* src = typed<int8_t>(env, get(env, spec, "data"), napi_int8_array, (size_t)rows * cols, what);
  const float* sc = typed<float>(env, get(env, spec, "scales"), napi_float32_array, rows, what);
  L.rows = rows;
  L.cols = cols;
  L.kp = (cols + 63) & ~63;
  L.w = dst;
  L.scale.assign(sc, sc + rows);
  L.sumw.assign(rows, 0);
  // Transpose to rows [out, in]: each output's weights contiguous for the GEMV (blocked for the cache).
  for (int c0 = 0; c0 < cols; c0 += 64)
    for (int r0 = 0; r0 < rows; r0 += 64)
      for (int cc = c0; cc < std::min(cols, c0 + 64); cc++)
        for (int rr = r0; rr < std::min(rows, r0 + 64); rr++) L.w[(size_t)rr * L.kp + cc] = src[(size_t)cc * rows + rr];
  for (int rr = 0; rr < rows; rr++) {
    int32_t s = 0;
    for (int cc = 0; cc < cols; cc++) s += L.w[(size_t)rr * L.kp + cc];
    L.sumw[rr] = s;
  }
}

std::vector<float> load_floats(napi_env env, napi_value v, size_t n, const char* what) {
  const float* p = typed<float>(env, v, napi_float32_array, n, what);
  return std::vector<float>(p, p + n);
}

void delete_model(napi_env env, Model* m) {
  if (m->embed_ref) napi_delete_reference(env, m->embed_ref);
  delete m;
}

void finalize_model(napi_env env, void* data, void*) { delete_model(env, static_cast<Model*>(data)); }

Model* unwrap(napi_env env, napi_value v) {
  napi_valuetype t;
  bool tagged = false;
  void* p = nullptr;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_object ||
      napi_check_object_type_tag(env, v, &kModelTag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, v, &p) != napi_ok || !p)
    throw Fail{"ERR_DECODE_MODEL", "not a live decode model (createModel's result, not disposed)", false};
  return static_cast<Model*>(p);
}

Isa isa_from(napi_env env, napi_value options) {
  napi_valuetype t = napi_undefined;
  if (options) napi_typeof(env, options, &t);
  bool has = false;
  if (t == napi_object) napi_has_named_property(env, options, "isa", &has);
  if (has) {
    napi_value v;
    napi_get_named_property(env, options, "isa", &v);
    char buf[32];
    size_t len = 0;
    if (napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok)
      throw Fail{"ERR_DECODE_ISA", "isa must be a string", false};
    const std::string s(buf, len);
    for (Isa isa : {Isa::avx512vnni, Isa::avx2, Isa::scalar})
      if (s == isa_name(isa)) {
        if (!isa_supported(isa)) throw Fail{"ERR_DECODE_ISA", "this CPU does not support " + s, true};
        return isa;
      }
    throw Fail{"ERR_DECODE_ISA", "isa must be avx512vnni, avx2 or scalar", true};
  }
  for (Isa isa : {Isa::avx512vnni, Isa::avx2})
    if (isa_supported(isa)) return isa;
  return Isa::scalar;
}

// Every exported function: `argc` arguments (fewer = TypeError with `usage`), the body's Fail thrown as
// the matching JS error, out-of-memory as a RangeError.
template <size_t N, class Body>
napi_value call(napi_env env, napi_callback_info info, size_t min_args, const char* usage, Body body) {
  size_t argc = N;
  napi_value argv[N == 0 ? 1 : N];
  try {
    ok(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr), "napi_get_cb_info");
    if (argc < min_args) throw Fail{"ERR_DECODE_ARGS", usage, false};
    return body(argv, argc);
  } catch (const Fail& f) {
    return throw_fail(env, f);
  } catch (const std::bad_alloc&) {
    return throw_fail(env, Fail{"ERR_DECODE_MEMORY", "out of memory for the model's weights", true});
  }
}

napi_value int32_value(napi_env env, int32_t v) {
  napi_value out;
  ok(napi_create_int32(env, v, &out), "napi_create_int32");
  return out;
}

napi_value string_value(napi_env env, const char* s) {
  napi_value out;
  ok(napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out), "napi_create_string_utf8");
  return out;
}

// [rows, cols] of linear layer i (per layer q+k+v, o, gate+up, down; then the head) and its name.
const char* linear_shape(const Config& c, size_t i, size_t count, int* rows, int* cols) {
  const int D = c.head_dim, Q = c.heads * D, W = c.kv_heads * D, H = c.hidden, I = c.inter;
  static const char* names[4] = {"q+k+v", "o_proj", "gate+up", "down_proj"};
  const bool head = i + 1 == count;
  const int k = i % 4;
  *rows = head ? c.vocab : k == 0 ? Q + 2 * W : k == 2 ? 2 * I : H;
  *cols = head ? H : k == 1 ? Q : k == 3 ? I : H;
  return head ? "head" : names[k];
}

// Linear layer i of the model from its spec.
void set_linear(napi_env env, Model& m, uint32_t i, napi_value spec) {
  if (i >= m.lin.size())
    throw Fail{"ERR_DECODE_ARGS", "linear index " + std::to_string(i) + " outside [0, " + std::to_string(m.lin.size()) + ")",
               true};
  int rows, cols;
  const char* name = linear_shape(m.c, i, m.lin.size(), &rows, &cols);
  Linear L;
  load_linear(env, spec, rows, cols, L, name, m.arena.p + m.at[i]);
  if (!m.lin[i].w) m.loaded++;
  m.lin[i] = std::move(L);
}

// createModel(config, weights, options?) -> model. Copies (and transposes) everything it needs: the
// JS arrays may be dropped afterwards.
//   config: { hiddenSize, numLayers, numHeads, numKvHeads, headDim, intermediateSize, vocabSize,
//             maxPositionEmbeddings, rmsNormEps, ropeTheta }
//   weights: { embed: Float32Array [V*H] (kept by reference, not copied), inputNorm: Float32Array[], postNorm: Float32Array[],
//             finalNorm, linears?: { rows, cols, data: Int8Array [cols*rows], scales }[] — per layer
//             q+k+v, o, gate+up, down; then the head. Without `linears`, setLinear sets them one by
//             one (so the caller never holds all of them at once). }
//   options: { isa?: "avx512vnni" | "avx2" | "scalar", threads?: 1..64, hugePages?: boolean (default true) }
napi_value CreateModel(napi_env env, napi_callback_info info) {
  return call<3>(env, info, 2, "createModel(config, weights, options?) takes 2-3 arguments",
                 [&](napi_value* argv, size_t argc) -> napi_value {
    auto m = std::make_unique<Model>();
    Config& c = m->c;
    napi_value cfg = argv[0];
    c.hidden = integer(env, get(env, cfg, "hiddenSize"), "hiddenSize", 1, 1 << 16);
    c.layers = integer(env, get(env, cfg, "numLayers"), "numLayers", 1, 1024);
    c.heads = integer(env, get(env, cfg, "numHeads"), "numHeads", 1, 1024);
    c.kv_heads = integer(env, get(env, cfg, "numKvHeads"), "numKvHeads", 1, 1024);
    c.head_dim = integer(env, get(env, cfg, "headDim"), "headDim", 2, 1024);
    c.inter = integer(env, get(env, cfg, "intermediateSize"), "intermediateSize", 1, 1 << 18);
    c.vocab = integer(env, get(env, cfg, "vocabSize"), "vocabSize", 1, 1 << 22);
    c.max_pos = integer(env, get(env, cfg, "maxPositionEmbeddings"), "maxPositionEmbeddings", 1, 1 << 22);
    c.eps = (float)number(env, get(env, cfg, "rmsNormEps"), "rmsNormEps");
    c.rope_theta = number(env, get(env, cfg, "ropeTheta"), "ropeTheta");
    if (c.heads % c.kv_heads != 0 || c.head_dim % 2 != 0)
      throw Fail{"ERR_DECODE_ARGS", "numHeads must be a multiple of numKvHeads and headDim even", true};
    napi_value options = argc > 2 ? argv[2] : nullptr;
    m->isa = isa_from(env, options);
    m->dots = dot_fn(m->isa);
    m->attn = attn_kernels(m->isa, c.head_dim);
    int threads = 1;
    bool huge_pages = true;
    if (options) {
      napi_valuetype t;
      ok(napi_typeof(env, options, &t), "napi_typeof");
      bool has = false, has_huge = false;
      if (t == napi_object) {
        ok(napi_has_named_property(env, options, "threads", &has), "napi_has_named_property");
        ok(napi_has_named_property(env, options, "hugePages", &has_huge), "napi_has_named_property");
      }
      if (has) threads = integer(env, get(env, options, "threads"), "threads", 1, 64);
      if (has_huge && napi_get_value_bool(env, get(env, options, "hugePages"), &huge_pages) != napi_ok)
        throw Fail{"ERR_DECODE_ARGS", "hugePages must be a boolean", false};
    }

    napi_value w = argv[1];
    const int H = c.hidden, D = c.head_dim, Q = c.heads * D, W = c.kv_heads * D, I = c.inter;
    napi_value embed = get(env, w, "embed");
    typed<float>(env, embed, napi_float32_array, (size_t)c.vocab * H, "embed");
    for (int l = 0; l < c.layers; l++) {
      m->in_norm.push_back(load_floats(env, element(env, get(env, w, "inputNorm"), l, c.layers, "inputNorm"), H, "inputNorm"));
      m->post_norm.push_back(load_floats(env, element(env, get(env, w, "postNorm"), l, c.layers, "postNorm"), H, "postNorm"));
    }
    m->final_norm = load_floats(env, get(env, w, "finalNorm"), H, "finalNorm");
    const uint32_t nlin = (uint32_t)c.layers * 4 + 1;
    m->lin.resize(nlin);
    size_t total = 0;
    for (uint32_t i = 0; i < nlin; i++) {
      int rows, cols;
      linear_shape(c, i, nlin, &rows, &cols);
      m->at.push_back(total);
      total += (size_t)rows * ((cols + 63) & ~63);
    }
    m->arena.map(total, huge_pages);
    bool has_linears = false;
    ok(napi_has_named_property(env, w, "linears", &has_linears), "napi_has_named_property");
    if (has_linears) {
      napi_value lins = get(env, w, "linears");
      for (uint32_t i = 0; i < nlin; i++) set_linear(env, *m, i, element(env, lins, i, nlin, "linears"));
    }

    // RoPE tables as graph.ts builds them (double angles, f32 tables; the query's times 1/sqrt(D)).
    const int half = D / 2;
    const double qs = 1 / std::sqrt((double)D);
    const size_t tn = (size_t)c.max_pos * half;
    m->cos_k.resize(tn), m->sin_k.resize(tn), m->cos_q.resize(tn), m->sin_q.resize(tn);
    for (int p = 0; p < c.max_pos; p++)
      for (int i = 0; i < half; i++) {
        const double inv = 1 / std::pow(c.rope_theta, (2.0 * i) / D);
        const size_t at = (size_t)p * half + i;
        m->cos_k[at] = (float)std::cos(p * inv);
        m->sin_k[at] = (float)std::sin(p * inv);
        m->cos_q[at] = (float)((double)m->cos_k[at] * qs);
        m->sin_q[at] = (float)((double)m->sin_k[at] * qs);
      }
    m->x.resize(H), m->h.resize(H), m->tmp.resize(H), m->qkv.resize(Q + 2 * W), m->ctx.resize(Q);
    m->gu.resize(2 * I), m->act.resize(I), m->scores.resize((size_t)c.heads * c.max_pos);
    m->aq = aligned<uint8_t>((size_t)((std::max({H, Q, I}) + 63) & ~63));
    m->acc.resize(std::max({Q + 2 * W, 2 * I, H, c.vocab}));
    m->pool = std::make_unique<Pool>(threads);

    napi_value obj;
    ok(napi_create_object(env, &obj), "napi_create_object");
    ok(napi_type_tag_object(env, obj, &kModelTag), "napi_type_tag_object");
    ok(napi_wrap(env, obj, m.get(), finalize_model, nullptr, nullptr), "napi_wrap");
    Model* owned = m.release();  // owned by the JS object now (its finalizer, or dispose)
    ok(napi_create_reference(env, embed, 1, &owned->embed_ref), "napi_create_reference");
    return obj;
  });
}

// step(model, token, pos, keys: Float32Array[], values: Float32Array[], logits: Float32Array)
napi_value Step(napi_env env, napi_callback_info info) {
  return call<7>(env, info, 6, "step(model, token, pos, keys, values, logits, adapter?) takes 6-7 arguments",
                 [&](napi_value* argv, size_t argc) -> napi_value {
    Model* m = unwrap(env, argv[0]);
    const Config& c = m->c;
    if (m->loaded != m->lin.size())
      throw Fail{"ERR_DECODE_MODEL",
                 "the model has " + std::to_string(m->loaded) + " of its " + std::to_string(m->lin.size()) +
                     " linear layers (setLinear)",
                 false};
    const int token = integer(env, argv[1], "token", 0, c.vocab - 1);
    const int pos = integer(env, argv[2], "pos", 0, 1 << 30);
    if (pos >= c.max_pos)
      throw Fail{"ERR_DECODE_KV",
                 "position " + std::to_string(pos) + " is beyond the context (" + std::to_string(c.max_pos) + ")",
                 true};
    if (!m->embed_map) {
      napi_value embed;
      ok(napi_get_reference_value(env, m->embed_ref, &embed), "napi_get_reference_value");
      m->embed = typed<float>(env, embed, napi_float32_array, (size_t)c.vocab * c.hidden,
                              "the model's embedding (its buffer was detached?)");
    }
    const size_t need = (size_t)(pos + 1) * c.kv_heads * c.head_dim;
    std::vector<float*> keys(c.layers), values(c.layers);
    for (int l = 0; l < c.layers; l++) {
      keys[l] = floats_at_least(env, element(env, argv[3], l, c.layers, "keys"), need, "keys[l]");
      values[l] = floats_at_least(env, element(env, argv[4], l, c.layers, "values"), need, "values[l]");
    }
    float* logits = typed<float>(env, argv[5], napi_float32_array, c.vocab, "logits");
    Adapter adapter;
    napi_valuetype at = napi_undefined;
    if (argc > 6) ok(napi_typeof(env, argv[6], &at), "napi_typeof");
    const bool has_adapter = at != napi_undefined && at != napi_null;
    if (has_adapter) load_adapter(env, argv[6], c, adapter);
    step(*m, token, pos, keys.data(), values.data(), logits, has_adapter ? &adapter : nullptr);
    return nullptr;
  });
}

// mapEmbedding(model, path, offset): the embedding [vocab, hidden] f32 from a read-only shared mapping of
// `path` at `offset` (page-aligned; the file must hold all of it), in place of createModel's array (its
// reference is dropped). The runtime maps the weights file onnxruntime maps, so both read the same
// page-cache pages and only the rows decoded are ever resident.
napi_value MapEmbedding(napi_env env, napi_callback_info info) {
  return call<3>(env, info, 3, "mapEmbedding(model, path, offset) takes 3 arguments",
                 [&](napi_value* argv, size_t) -> napi_value {
    Model* m = unwrap(env, argv[0]);
    char path[4096];
    size_t len = 0;
    if (napi_get_value_string_utf8(env, argv[1], path, sizeof path, &len) != napi_ok || len == 0 ||
        len >= sizeof path - 1)
      throw Fail{"ERR_DECODE_ARGS", "path must be a non-empty string", false};
    const double off = number(env, argv[2], "offset");
    const long page = sysconf(_SC_PAGESIZE);
    if (!(off >= 0) || off != std::floor(off) || std::fmod(off, (double)page) != 0)
      throw Fail{"ERR_DECODE_ARGS", "offset must be a non-negative multiple of the page size", true};
    const size_t bytes = (size_t)m->c.vocab * m->c.hidden * 4;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Fail{"ERR_DECODE_ARGS", std::string("cannot open ") + path + ": " + std::strerror(errno), true};
    struct stat st;
    if (fstat(fd, &st) != 0 || (double)st.st_size < off + (double)bytes) {
      close(fd);
      throw Fail{"ERR_DECODE_ARGS", "the file holds no whole embedding at that offset", true};
    }
    void* p = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, (off_t)off);
    close(fd);
    if (p == MAP_FAILED) throw Fail{"ERR_DECODE_ARGS", std::string("mmap failed: ") + std::strerror(errno), true};
    if (m->embed_map) munmap(m->embed_map, m->embed_map_bytes);
    m->embed_map = p;
    m->embed_map_bytes = bytes;
    m->embed = static_cast<const float*>(p);
    if (m->embed_ref) {
      napi_delete_reference(env, m->embed_ref);
      m->embed_ref = nullptr;
    }
    return nullptr;
  });
}

// setLinear(model, index, { rows, cols, data: Int8Array [cols*rows], scales }): copies (transposed).
napi_value SetLinear(napi_env env, napi_callback_info info) {
  return call<3>(env, info, 3, "setLinear(model, index, linear) takes 3 arguments",
                 [&](napi_value* argv, size_t) -> napi_value {
    Model* m = unwrap(env, argv[0]);
    set_linear(env, *m, (uint32_t)integer(env, argv[1], "index", 0, 1 << 20), argv[2]);
    return nullptr;
  });
}

// info(model) -> { isa, threads, weightBytes }
napi_value Info(napi_env env, napi_callback_info info) {
  return call<1>(env, info, 1, "info(model)", [&](napi_value* argv, size_t) -> napi_value {
    Model* m = unwrap(env, argv[0]);
    size_t weight_bytes = 0;
    for (auto& L : m->lin) weight_bytes += (size_t)L.rows * L.kp + L.rows * 8;
    napi_value obj, bytes;
    ok(napi_create_object(env, &obj), "napi_create_object");
    ok(napi_create_double(env, (double)weight_bytes, &bytes), "napi_create_double");
    ok(napi_set_named_property(env, obj, "isa", string_value(env, isa_name(m->isa))), "napi_set_named_property");
    ok(napi_set_named_property(env, obj, "threads", int32_value(env, m->pool->size())), "napi_set_named_property");
    ok(napi_set_named_property(env, obj, "weightBytes", bytes), "napi_set_named_property");
    return obj;
  });
}

// dispose(model): frees the weights now (the object is unusable afterwards; a second dispose is a no-op).
napi_value Dispose(napi_env env, napi_callback_info info) {
  return call<1>(env, info, 1, "dispose(model)", [&](napi_value* argv, size_t) -> napi_value {
    bool tagged = false;
    void* p = nullptr;
    ok(napi_check_object_type_tag(env, argv[0], &kModelTag, &tagged), "napi_check_object_type_tag");
    if (!tagged) throw Fail{"ERR_DECODE_MODEL", "not a decode model (createModel's result)", false};
    if (napi_remove_wrap(env, argv[0], &p) == napi_ok) delete_model(env, static_cast<Model*>(p));
    return nullptr;
  });
}

// isas() -> the kernels this CPU can run, fastest first.
napi_value Isas(napi_env env, napi_callback_info info) {
  return call<1>(env, info, 0, "isas()", [&](napi_value*, size_t) -> napi_value {
    napi_value arr;
    ok(napi_create_array(env, &arr), "napi_create_array");
    uint32_t i = 0;
    for (Isa isa : {Isa::avx512vnni, Isa::avx2, Isa::scalar})
      if (isa_supported(isa)) ok(napi_set_element(env, arr, i++, string_value(env, isa_name(isa))), "napi_set_element");
    return arr;
  });
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"createModel", nullptr, CreateModel, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"step", nullptr, Step, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setLinear", nullptr, SetLinear, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"mapEmbedding", nullptr, MapEmbedding, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"dispose", nullptr, Dispose, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"isas", nullptr, Isas, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    napi_throw_error(env, nullptr, "napi_define_properties failed");
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
