// bench:gemv's native side (bench/gemv.ts compiles it with g++ -O3 -march=native -fopenmp at bench time).
// A batch-1 int8 GEMV over per-output-channel int8 weights [N, K] + one f32 scale per output, the
// activations quantized per call to uint8 with a zero point exactly as onnxruntime's
// DynamicQuantizeMatMul does (DynamicQuantizeLinear), accumulated with AVX-512 VNNI vpdpbusd
// (u8 x s8 -> s32, no intermediate saturation; scalar loop where the CPU lacks it). Software
// prefetch 1-4 KB ahead measured no faster than the hardware's on this machine.
//   gemv <weights file>    then commands on stdin, one JSON line out per command:
//   gemv T R | read T R    R passes over every matrix with T threads (a barrier after each matrix,
//                          as a decode step's dependent matmuls need); read = plain streaming read of
//                          the same bytes. Out: {"wallMs": median per pass, "cpuMs": process CPU per pass}
//   dump PATH              the f32 outputs of the last gemv pass, concatenated, to PATH
#include <immintrin.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

struct Mat {
  int n, k;
  const int8_t* w;  // [n, k] row-major
  const float* s;   // [n]
  std::vector<int32_t> sumw;
  const float* x;   // [k], the input this matrix is fed
  std::vector<int32_t> acc;
  std::vector<float> y;
};
static std::vector<Mat> mats;
static std::vector<float> inputs;  // x576 then x1536
static int8_t* blob;
static size_t weightBytes;

struct QuantX {
  alignas(64) uint8_t q[4096];
  float scale;
  int32_t zp;
};
// DynamicQuantizeLinear: range widened to include 0, scale = range / 255, zp = round(-min / scale).
static void quantize(const float* x, int k, QuantX& out) {
  float mn = 0, mx = 0;
  for (int i = 0; i < k; i++) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
  float scale = (mx - mn) / 255.f;
  if (scale == 0) scale = 1;
  int zp = (int)std::nearbyint(std::min(255.f, std::max(0.f, -mn / scale)));
  for (int i = 0; i < k; i++) out.q[i] = (uint8_t)std::min(255.f, std::max(0.f, std::nearbyint(x[i] / scale) + zp));
  out.scale = scale;
  out.zp = zp;
}

static void rowsVnni(const Mat& m, const QuantX& a, int r0, int r1, int32_t* acc) {
#if defined(__AVX512VNNI__)
  // Rows in memory order, one accumulator each (out-of-order execution overlaps the rows' chains):
  // reading the 4 rows of a block interleaved instead streamed at ~half the plain read's rate.
  const int k = m.k;  // a multiple of 64 for every SmolLM matrix
  for (int r = r0; r < r1; r++) {
    const int8_t* w = m.w + (size_t)r * k;
    __m512i c = _mm512_setzero_si512();
    for (int i = 0; i < k; i += 64) c = _mm512_dpbusd_epi32(c, _mm512_load_si512(a.q + i), _mm512_loadu_si512(w + i));
    acc[r] = _mm512_reduce_add_epi32(c);
  }
#else
  for (int r = r0; r < r1; r++) {
    int32_t s = 0;
    for (int i = 0; i < m.k; i++) s += (int32_t)a.q[i] * m.w[(size_t)r * m.k + i];
    acc[r] = s;
  }
#endif
}

static void gemvPass(int threads) {
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    QuantX a;
    for (auto& m : mats) {
      quantize(m.x, m.k, a);  // each thread its own copy: no barrier before the GEMV
      const int per = (m.n / nt + 15) & ~15;
      const int r0 = std::min(m.n, t * per), r1 = std::min(m.n, r0 + per);
      rowsVnni(m, a, r0, r1, m.acc.data());
      for (int r = r0; r < r1; r++) m.y[r] = a.scale * m.s[r] * (float)(m.acc[r] - a.zp * m.sumw[r]);
#pragma omp barrier
    }
  }
}

static volatile int64_t sink;
static void readPass(int threads) {
  int64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    for (auto& m : mats) {
      const size_t bytes = (size_t)m.n * m.k, per = ((bytes / nt) + 63) & ~(size_t)63;
      const size_t b0 = std::min(bytes, t * per), b1 = std::min(bytes, b0 + per);
#if defined(__AVX512F__)
      __m512i x0 = _mm512_setzero_si512(), x1 = x0;
      for (size_t i = b0; i + 128 <= b1; i += 128) {
        x0 = _mm512_xor_si512(x0, _mm512_loadu_si512(m.w + i));
        x1 = _mm512_xor_si512(x1, _mm512_loadu_si512(m.w + i + 64));
      }
      total += _mm512_reduce_add_epi64(_mm512_xor_si512(x0, x1));
#else
      for (size_t i = b0; i < b1; i += 8) { int64_t v; memcpy(&v, m.w + i, 8); total ^= v; }
#endif
#pragma omp barrier
    }
  }
  sink = total;
}

static double cpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  if (!f) return 2;
  int32_t count;
  if (fread(&count, 4, 1, f) != 1) return 2;
  std::vector<std::pair<int, int>> shapes(count);
  for (auto& s : shapes)
    if (fread(&s.first, 4, 1, f) != 1 || fread(&s.second, 4, 1, f) != 1) return 2;
  inputs.resize(576 + 1536);
  if (fread(inputs.data(), 4, inputs.size(), f) != inputs.size()) return 2;
  size_t total = 0;
  for (auto& s : shapes) total += (size_t)s.first * s.second + 4 * (size_t)s.first;
  blob = (int8_t*)aligned_alloc(64, (total + 63) & ~(size_t)63);
  if (fread(blob, 1, total, f) != total) return 2;
  fclose(f);
  size_t off = 0;
  for (auto& s : shapes) {
    Mat m;
    m.n = s.first, m.k = s.second;
    m.w = blob + off;
    off += (size_t)m.n * m.k;
    m.s = (const float*)(blob + off);
    off += 4 * (size_t)m.n;
    m.x = m.k == 576 ? inputs.data() : inputs.data() + 576;
    m.sumw.assign(m.n, 0);  // prepacked once, like MLAS's column sums
    for (int r = 0; r < m.n; r++)
      for (int i = 0; i < m.k; i++) m.sumw[r] += m.w[(size_t)r * m.k + i];
    m.acc.assign(m.n, 0);
    m.y.assign(m.n, 0);
    weightBytes += (size_t)m.n * m.k + 4 * (size_t)m.n;
    mats.push_back(std::move(m));
  }
  // The check: the kernel's s32 accumulators equal a scalar loop's, at 1 and 2 threads.
  long mismatches = 0;
  for (int threads : {1, 2}) {
    gemvPass(threads);
    for (auto& m : mats) {
      QuantX a;
      quantize(m.x, m.k, a);
      for (int r = 0; r < m.n; r++) {
        int32_t s = 0;
        for (int i = 0; i < m.k; i++) s += (int32_t)a.q[i] * m.w[(size_t)r * m.k + i];
        if (s != m.acc[r]) mismatches++;
      }
    }
  }
#if defined(__AVX512VNNI__)
  const char* isa = "avx512-vnni";
#else
  const char* isa = "scalar";
#endif
  printf("{\"ready\":true,\"matrices\":%zu,\"bytes\":%zu,\"mismatches\":%ld,\"isa\":\"%s\"}\n", mats.size(),
         weightBytes, mismatches, isa);
  fflush(stdout);
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "dump") {
      std::string path;
      std::cin >> path;
      FILE* o = fopen(path.c_str(), "wb");
      for (auto& m : mats) fwrite(m.y.data(), 4, m.n, o);
      fclose(o);
      printf("{\"ok\":true}\n");
    } else {
      int threads, runs;
      std::cin >> threads >> runs;
      std::vector<double> walls;
      const double c0 = cpuNow();
      for (int i = 0; i < runs; i++) {
        auto t0 = std::chrono::steady_clock::now();
        if (cmd == "gemv") gemvPass(threads);
        else readPass(threads);
        walls.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      const double cpu = (cpuNow() - c0) / runs;
      std::sort(walls.begin(), walls.end());
      printf("{\"wallMs\":%.4f,\"cpuMs\":%.4f}\n", walls[walls.size() / 2], cpu);
    }
    fflush(stdout);
  }
  return 0;
}
