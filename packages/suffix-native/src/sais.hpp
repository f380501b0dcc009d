// SA-IS suffix-array construction (Nong, Zhang & Chan, "Two efficient algorithms for linear time
// suffix array construction", 2009), written for this project (no code from libsais, libdivsufsort or
// sais-lite). Same algorithm and memory layout as the TypeScript builder in
// packages/attribution-core/src/suffix-array.ts (whose results it must equal bit for bit), plus what
// native code does well:
// - the text is read through its own element type (uint8_t / uint16_t / int32_t) by templates, so a
//   byte or 16-bit text is never widened;
// - every scan whose next access is a data-dependent read of the text (the induced sorts, LMS
//   naming, placing the sorted LMS suffixes) software-prefetches that read a fixed distance ahead:
//   the scan itself is sequential, the text reads are random, and on texts larger than the cache
//   these misses are what the time goes on;
// - the LMS positions of a level are a bit set computed once without branches (LmsBits), and the
//   compactions are branch-free: about a third of a text's positions are LMS, in no pattern a branch
//   predictor can learn;
// - bucket pointers are kept per symbol in a small array (L1-resident for byte texts), sized by the
//   largest symbol that occurs rather than the declared alphabet.
// Memory beyond the text and the output: two bucket arrays at the top level and n/8 bytes of LMS bits
// per level; the reduced problem of each level lives in the output, its buckets in the output's free
// middle when they fit (else 4 or 8 bytes per reduced symbol are allocated).
//
// Types are never stored: an entry carries the one bit the next scan needs in its sign, and the type
// of a neighbour is decided by comparing adjacent symbols (as in the TypeScript builder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

namespace olsa {

using idx = int32_t;

// How far ahead (in SA entries) the scans prefetch the text. Large enough to cover a DRAM miss at
// a few ns per entry; small enough that the prefetched lines are still in L1/L2 when used.
constexpr idx PREFETCH = 48;

template <class P>
inline void prefetch_r(const P* p) {
  __builtin_prefetch(static_cast<const void*>(p), 0, 1);
}

// Address arithmetic for a prefetch only: an out-of-range entry (negative, 0, a flag) gives an
// address that is never dereferenced; computing it through uintptr_t keeps it defined.
template <class Sym>
inline const Sym* at_unchecked(const Sym* base, intptr_t i) {
  return reinterpret_cast<const Sym*>(reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(i) * sizeof(Sym));
}

inline void fill_buckets(idx* bkt, const idx* counts, idx k, bool end) {
  idx sum = 0;
  if (end) {
    for (idx c = 0; c < k; c++) {
      sum += counts[c];
      bkt[c] = sum;
    }
  } else {
    for (idx c = 0; c < k; c++) {
      bkt[c] = sum;
      sum += counts[c];
    }
  }
}

// The induced sorts scan SA sequentially and read the text at SA[i] - 1 and - 2: random reads, the
// misses the time goes on. These drive a scan, prefetching those bytes PREFETCH entries ahead (the entry
// read ahead may still change before the scan reaches it; then the prefetch is merely wasted).
template <class Sym, class Step>
inline void scan_forward(const Sym* T, const idx* SA, idx n, Step step) {
  const idx stop = n > PREFETCH ? n - PREFETCH : 0;
  idx i = 0;
  for (; i < stop; i++) {
    prefetch_r(at_unchecked(T, static_cast<intptr_t>(SA[i + PREFETCH]) - 2));
    step(i);
  }
  for (; i < n; i++) step(i);
}

template <class Sym, class Step>
inline void scan_backward(const Sym* T, const idx* SA, idx n, Step step) {
  idx i = n - 1;
  for (; i >= PREFETCH; i--) {
    prefetch_r(at_unchecked(T, static_cast<intptr_t>(SA[i - PREFETCH]) - 2));
    step(i);
  }
  for (; i >= 0; i--) step(i);
}

// The suffix n-1 precedes the virtual sentinel (which sorts first): it heads its L bucket. Flagged (~)
// when its predecessor is S-type.
template <class Sym>
inline void place_last(const Sym* T, idx* SA, idx n, idx* bkt) {
  const idx last = static_cast<idx>(T[n - 1]);
  SA[bkt[last]++] = (n >= 2 && static_cast<idx>(T[n - 2]) < last) ? ~(n - 1) : n - 1;
}

// The LMS positions of T[0..n) (S-type, L-type predecessor) as a bit set, computed once per level in a
// branch-free right-to-left pass. The three later passes that need them in text order (seeding stage 1,
// the LMS substring lengths, the reduced string's positions) walk the set bits instead of recomputing
// types: about a third of the positions of a text are LMS, in no predictable pattern, so a per-position
// branch mispredicts often. n/8 bytes.
class LmsBits {
 public:
  template <class Sym>
  LmsBits(const Sym* T, idx n) : words_((static_cast<size_t>(n) + 63) / 64, 0) {
    uint32_t s_next = 0;  // type of p; n-1 is L (it precedes the virtual sentinel)
    idx c1 = static_cast<idx>(T[n - 1]);
    uint64_t acc = 0;
    for (idx p = n - 1; p >= 1; p--) {
      const idx c0 = static_cast<idx>(T[p - 1]);
      const uint32_t s = static_cast<uint32_t>(c0 < c1) | (static_cast<uint32_t>(c0 == c1) & s_next);
      acc |= static_cast<uint64_t>(s_next & ~s & 1u) << (p & 63);  // p is LMS
      if ((p & 63) == 0) {
        words_[static_cast<size_t>(p) >> 6] = acc;
        acc = 0;
      }
      s_next = s;
      c1 = c0;
    }
    words_[0] = acc;  // position 0 is never LMS
  }

  // Calls f(p) for every LMS position p, from the last down.
  template <class F>
  void for_each_descending(F f) const {
    for (size_t w = words_.size(); w-- > 0;) {
      uint64_t x = words_[w];
      while (x != 0) {
        const int b = 63 - __builtin_clzll(x);
        f(static_cast<idx>((w << 6) + static_cast<size_t>(b)));
        x ^= uint64_t{1} << b;
      }
    }
  }

 private:
  std::vector<uint64_t> words_;
};

// Stage 1: sort the LMS substrings. Afterwards the negative entries of sa[0..n), in array order,
// are ~p for the LMS positions p sorted by their LMS substrings; all other entries are 0.
// (Position 0 is never LMS, so 0 can mean "empty".)
template <class Sym>
void sort_lms_substrings(const Sym* T, idx* SA, idx n, const idx* counts, idx* bkt, idx k, const LmsBits& lms) {
  std::memset(SA, 0, sizeof(idx) * static_cast<size_t>(n));
  fill_buckets(bkt, counts, k, true);
  lms.for_each_descending([&](idx p) { SA[--bkt[static_cast<idx>(T[p])]] = p; });
  // L scan: positive entries induce their (L-type) predecessor and are cleared; ~j marks an entry
  // whose predecessor is S-type (restored to j for the S scan).
  fill_buckets(bkt, counts, k, false);
  place_last(T, SA, n, bkt);
  scan_forward(T, SA, n, [&](idx i) {
    idx j = SA[i];
    if (j > 0) {
      j--;
      const idx c0 = static_cast<idx>(T[j]);
      SA[bkt[c0]++] = (j > 0 && static_cast<idx>(T[j - 1]) < c0) ? ~j : j;
      SA[i] = 0;
    } else if (j < 0) {
      SA[i] = ~j;
    }
  });
  // S scan: positive entries induce their S-type predecessor and are cleared; one whose own
  // predecessor is L-type is LMS: stored as ~j and left (the result).
  fill_buckets(bkt, counts, k, true);
  scan_backward(T, SA, n, [&](idx i) {
    idx j = SA[i];
    if (j > 0) {
      j--;
      const idx c0 = static_cast<idx>(T[j]);
      SA[--bkt[c0]] = (j > 0 && static_cast<idx>(T[j - 1]) > c0) ? ~j : j;
      SA[i] = 0;
    }
  });
}

// Final stage of a level: from the sorted LMS suffixes at the ends of their buckets (non-negative;
// empty slots -1), induce the L-type then the S-type suffixes. An entry is stored complemented
// when its predecessor must NOT be induced by the scan that reads it.
template <class Sym>
void induce(const Sym* T, idx* SA, idx n, const idx* counts, idx* bkt, idx k) {
  fill_buckets(bkt, counts, k, false);
  place_last(T, SA, n, bkt);
  scan_forward(T, SA, n, [&](idx i) {
    idx j = SA[i];
    SA[i] = ~j;
    if (j > 0) {
      j--;
      const idx c0 = static_cast<idx>(T[j]);
      SA[bkt[c0]++] = (j > 0 && static_cast<idx>(T[j - 1]) < c0) ? ~j : j;
    }
  });
  // S scan: after the flip, positive entries are those whose predecessor is S-type.
  fill_buckets(bkt, counts, k, true);
  scan_backward(T, SA, n, [&](idx i) {
    idx j = SA[i];
    if (j > 0) {
      j--;
      const idx c0 = static_cast<idx>(T[j]);
      SA[--bkt[c0]] = (j == 0 || static_cast<idx>(T[j - 1]) > c0) ? ~j : j;
    } else {
      SA[i] = ~j;
    }
  });
}

// One SA-IS level over T[0..n) (symbols in [0, k)) into SA[0..n). `counts` holds the symbol counts;
// `bkt` is scratch of length >= k. Throws std::bad_alloc when a reduced level's buckets fit nowhere.
template <class Sym>
void level(const Sym* T, idx* SA, idx n, idx k, idx* counts, idx* bkt) {
  if (n == 1) {
    SA[0] = 0;
    return;
  }
  const LmsBits lms(T, n);
  sort_lms_substrings(T, SA, n, counts, bkt, k, lms);

  // Compact the sorted LMS positions (the negative entries) into SA[0..n1).
  // Branch-free (a third of the entries are LMS, unpredictably): the store lands at n1 <= i, an entry
  // already read, and only counts when the entry was LMS.
  idx n1 = 0;
  for (idx i = 0; i < n; i++) {
    const idx p = SA[i];
    SA[n1] = ~p;
    n1 += static_cast<idx>(p < 0);
  }
  // Name the LMS substrings. Each LMS substring's length goes to SA[n1 + p/2] (LMS positions are
  // >= 2 apart, so the slots are distinct); in sorted order, only equal lengths compare text. The
  // last LMS substring runs into the virtual sentinel: length 0 marks it unique.
  std::memset(SA + n1, 0, sizeof(idx) * static_cast<size_t>(n - n1));
  {
    idx next = -1;
    lms.for_each_descending([&](idx p) {
      SA[n1 + (p >> 1)] = next < 0 ? 0 : next - p + 1;
      next = p;
    });
  }
  idx name = 0;
  {
    idx prev = -1;
    idx prev_len = 0;
    for (idx i = 0; i < n1; i++) {
      if (i + PREFETCH < n1) {
        const idx q = SA[i + PREFETCH];
        prefetch_r(SA + n1 + (q >> 1));
        prefetch_r(T + q);
      }
      const idx pos = SA[i];
      idx* slot = SA + n1 + (pos >> 1);
      const idx len = *slot;
      bool diff = true;
      if (prev >= 0 && len == prev_len && len != 0) {
        // A plain loop: libc's memcmp (call and size dispatch for a few symbols) and a masked 8-byte
        // compare measured slower or no faster in process-CPU-time A/Bs on 10M SOTU bytes.
        diff = false;
        for (idx d = 0; d < len; d++) {
          if (T[pos + d] != T[prev + d]) {
            diff = true;
            break;
          }
        }
      }
      if (diff) {
        name++;
        prev = pos;
        prev_len = len;
      }
      *slot = name;  // names 1..; 0 = no LMS position here
    }
  }
  // Names to the end of SA in text order, branch-free as above (stores land at j >= i, already read;
  // a store from an empty slot is overwritten or left in the free middle).
  for (idx i = n - 1, j = n - 1; i >= n1; i--) {
    const idx v = SA[i];
    SA[j] = v - 1;
    j -= static_cast<idx>(v > 0);
  }

  // Stage 2: sort the reduced string (names in text order), recursing if names repeat.
  idx* s1 = SA + (n - n1);
  idx* sa1 = SA;
  if (name < n1) {
    const idx free_slots = n - 2 * n1;
    std::vector<idx> own;
    idx* counts1;
    idx* bkt1;
    if (free_slots >= 2 * name) {
      counts1 = SA + n1;
      bkt1 = SA + n1 + name;
    } else if (free_slots >= name) {  // half fits: allocate only the other half
      counts1 = SA + n1;
      own.resize(static_cast<size_t>(name));
      bkt1 = own.data();
    } else {
      own.resize(2 * static_cast<size_t>(name));
      counts1 = own.data();
      bkt1 = own.data() + name;
    }
    std::memset(counts1, 0, sizeof(idx) * static_cast<size_t>(name));
    for (idx i = 0; i < n1; i++) counts1[s1[i]]++;
    level<idx>(s1, sa1, n1, name, counts1, bkt1);
  } else {
    for (idx i = 0; i < n1; i++) sa1[s1[i]] = i;
  }

  // Stage 3: LMS positions in text order into s1, map the reduced ranks back, place the sorted LMS
  // suffixes at the ends of their buckets and induce the full order.
  {
    idx j = n1;
    lms.for_each_descending([&](idx p) { s1[--j] = p; });
  }
  for (idx i = 0; i < n1; i++) {
    if (i + PREFETCH < n1) prefetch_r(s1 + sa1[i + PREFETCH]);
    sa1[i] = s1[sa1[i]];
  }
  for (idx i = n1; i < n; i++) SA[i] = -1;
  fill_buckets(bkt, counts, k, true);
  for (idx i = n1 - 1; i >= 0; i--) {
    if (i >= PREFETCH) prefetch_r(T + SA[i - PREFETCH]);
    const idx j = SA[i];
    SA[i] = -1;
    SA[--bkt[static_cast<idx>(T[j])]] = j;
  }
  induce(T, SA, n, counts, bkt, k);
}

// Checks that every symbol of T is in [0, k). Returns the index of the first one outside, or -1; sets
// `used` to (largest symbol) + 1, the bucket arrays' length (symbols above it do not occur, so they do
// not change the result, and a generous alphabet size costs no memory).
template <class Sym>
intptr_t check_symbols(const Sym* T, size_t n, idx k, idx* used) {
  int64_t lo = 0;
  int64_t hi = -1;
  for (size_t i = 0; i < n; i++) {
    const int64_t c = static_cast<int64_t>(T[i]);
    lo = c < lo ? c : lo;
    hi = c > hi ? c : hi;
  }
  *used = static_cast<idx>(hi + 1);
  if (lo >= 0 && hi < k) return -1;
  for (size_t i = 0; i < n; i++) {
    const int64_t c = static_cast<int64_t>(T[i]);
    if (c < 0 || c >= k) return static_cast<intptr_t>(i);
  }
  return -1;
}

// Counts the symbols of T (all in [0, k)) into counts[0..k).
template <class Sym>
void count_symbols(const Sym* T, size_t n, idx k, idx* counts) {
  std::memset(counts, 0, sizeof(idx) * static_cast<size_t>(k));
  for (size_t i = 0; i < n; i++) counts[static_cast<idx>(T[i])]++;
}

// The suffix array of T[0..n) (symbols in [0, k), checked beforehand by check_symbols; `counts` from
// count_symbols) into SA[0..n). `bkt`: scratch of length k.
template <class Sym>
void suffix_array(const Sym* T, idx* SA, idx n, idx k, idx* counts, idx* bkt) {
  if (n > 0) level<Sym>(T, SA, n, k, counts, bkt);
}

}  // namespace olsa
