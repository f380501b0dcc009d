// Node-API binding of the native SA-IS builder (sais.hpp): `build(text, alphabetSize, out)` fills the
// Int32Array `out` with the suffix array of `text` (Uint8Array, Uint16Array or Int32Array; symbols in
// [0, alphabetSize)). Synchronous: it holds the calling thread for the whole build (~20-30 MB/s of
// text), so services call it from a worker thread (apps/attribution's build thread does).
//
// Why hand-written: no maintained npm package builds suffix arrays at C speed (the fast builders,
// libsais and libdivsufsort, are C libraries not published on npm; libsais is not in Debian either),
// and the project's TypeScript SA-IS runs at ~0.3x libdivsufsort. Plain Node-API (no node-addon-api)
// keeps the package free of dependencies; it is ABI-stable across Node versions.
#include <node_api.h>

#include <cstdint>
#include <cstdio>
#include <new>
#include <string>
#include <vector>

#include "sais.hpp"

namespace {

napi_value throw_error(napi_env env, const char* code, const std::string& message, bool range) {
  if (range)
    napi_throw_range_error(env, code, message.c_str());
  else
    napi_throw_type_error(env, code, message.c_str());
  return nullptr;
}

#define CHECK_NAPI(call)                                        \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error(env, nullptr, "Node-API call failed: " #call); \
      return nullptr;                                           \
    }                                                           \
  } while (0)

struct View {
  napi_typedarray_type type;
  size_t length;
  void* data;
};

// The typed array behind `value`, or false when it is none.
bool typed_view(napi_env env, napi_value value, View* view) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return false;
  napi_value buffer;
  size_t offset = 0;
  return napi_get_typedarray_info(env, value, &view->type, &view->length, &view->data, &buffer, &offset) == napi_ok;
}

template <class Sym>
napi_value run(napi_env env, const Sym* text, size_t n, int32_t k, int32_t* out) {
  int32_t used = 0;
  const intptr_t bad = olsa::check_symbols(text, n, k, &used);
  if (bad >= 0) {
    const long long c = static_cast<long long>(text[bad]);
    return throw_error(env, "ERR_SA_ALPHABET",
                       "symbol " + std::to_string(c) + " at " + std::to_string(bad) + " outside alphabet [0, " +
                           std::to_string(k) + ")",
                       true);
  }
  if (n == 0) return nullptr;
  std::vector<int32_t> counts;
  std::vector<int32_t> bkt;
  try {
    counts.resize(static_cast<size_t>(used));
    bkt.resize(static_cast<size_t>(used));
  } catch (const std::bad_alloc&) {
    return throw_error(env, "ERR_SA_MEMORY", "out of memory for the alphabet's buckets", true);
  }
  olsa::count_symbols(text, n, used, counts.data());
  try {
    olsa::suffix_array<Sym>(text, out, static_cast<int32_t>(n), used, counts.data(), bkt.data());
  } catch (const std::bad_alloc&) {
    return throw_error(env, "ERR_SA_MEMORY", "out of memory for a reduced level's buckets", true);
  }
  return nullptr;
}

napi_value Build(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK_NAPI(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 3) return throw_error(env, "ERR_SA_ARGS", "build(text, alphabetSize, out) takes 3 arguments", false);

  View t;
  if (!typed_view(env, argv[0], &t) ||
      (t.type != napi_uint8_array && t.type != napi_uint16_array && t.type != napi_int32_array))
    return throw_error(env, "ERR_SA_TEXT", "text must be a Uint8Array, Uint16Array or Int32Array", false);
  const size_t n = t.length;

  napi_valuetype k_type;
  CHECK_NAPI(napi_typeof(env, argv[1], &k_type));
  if (k_type != napi_number) return throw_error(env, "ERR_SA_ALPHABET", "alphabetSize must be a number", false);
  double kd = 0;
  CHECK_NAPI(napi_get_value_double(env, argv[1], &kd));
  if (!(kd >= 1 && kd <= 2147483647.0) || kd != static_cast<double>(static_cast<int64_t>(kd)))
    return throw_error(env, "ERR_SA_ALPHABET", "alphabetSize must be an integer in [1, 2^31)", true);
  const int32_t k = static_cast<int32_t>(kd);

  View o;
  if (!typed_view(env, argv[2], &o) || o.type != napi_int32_array)
    return throw_error(env, "ERR_SA_OUT", "out must be an Int32Array", false);
  if (o.length != n) return throw_error(env, "ERR_SA_OUT", "out must have the text's length", true);
  if (n > 0x7fffffffu) return throw_error(env, "ERR_SA_TEXT", "text longer than 2^31 - 1 symbols", true);
  const size_t width = t.type == napi_uint8_array ? 1 : t.type == napi_uint16_array ? 2 : 4;
  const auto t0 = reinterpret_cast<uintptr_t>(t.data);
  const auto o0 = reinterpret_cast<uintptr_t>(o.data);
  if (n > 0 && t0 < o0 + n * 4 && o0 < t0 + n * width)
    return throw_error(env, "ERR_SA_OUT", "out must not share memory with text", false);

  auto* sa = static_cast<int32_t*>(o.data);
  switch (t.type) {
    case napi_uint8_array:
      return run(env, static_cast<const uint8_t*>(t.data), n, k, sa);
    case napi_uint16_array:
      return run(env, static_cast<const uint16_t*>(t.data), n, k, sa);
    default:
      return run(env, static_cast<const int32_t*>(t.data), n, k, sa);
  }
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  CHECK_NAPI(napi_create_function(env, "build", NAPI_AUTO_LENGTH, Build, nullptr, &fn));
  CHECK_NAPI(napi_set_named_property(env, exports, "build", fn));
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
