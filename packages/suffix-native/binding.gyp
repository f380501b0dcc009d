{
  "targets": [
    {
      "target_name": "suffix_native",
      "sources": ["src/addon.cc"],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
